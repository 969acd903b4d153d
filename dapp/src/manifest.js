// A job manifest as computenet/manifest.py's build_manifest makes it, and its canonical bytes
// (canonical_json): sorted keys, no whitespace, UTF-8, defaults filled in, except the
// `verification` section when it equals its defaults and `stores` when empty.
// The checks here only name a mistake early; the gateway and the agents validate in full.
import { keccak256 } from "viem";
import { treeFromFiles } from "./merkle.js";
import { PlainError } from "./errors.js";

export const ZERO_ROOT = "0x" + "00".repeat(32);
export const DEFAULT_VERIFICATION = Object.freeze({
  compare: "exact",
  numeric: [],
  spot_check_bps: 1000,
  metering_tolerance_bps: 5000,
});
const SEGMENT = /^[A-Za-z0-9._+,=@~-]+$/;
const IMAGE = /^[^@\s]+@sha256:[0-9a-f]{64}$/;

/** Why a relative path is not portable (computenet.manifest.portable_problem), or null. */
export function portableProblem(path) {
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > 4096) return "is over 4096 bytes";
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === "..")
      return "must be a normalised POSIX path without empty, '.' or '..' segments";
    if (new TextEncoder().encode(segment).length > 255) return "has a segment over 255 bytes";
    if (!SEGMENT.test(segment)) {
      const bad = Array.from(segment).find((c) => !SEGMENT.test(c));
      return `has the character ${JSON.stringify(bad)}, outside the portable set A-Z a-z 0-9 . _ - + , = @ ~`;
    }
  }
  return null;
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function verificationSection(verification) {
  const v = { ...DEFAULT_VERIFICATION, ...(verification || {}) };
  v.numeric = (v.numeric || []).map((n) => ({ path: n.path, rtol: n.rtol ?? "0", atol: n.atol ?? "0" }));
  const isDefault =
    v.compare === "exact" && !v.numeric.length && v.spot_check_bps === 1000 && v.metering_tolerance_bps === 5000;
  return isDefault ? null : v;
}

/**
 * The manifest for `files` ([{path, bytes}]) staged under /in, each named by its SHA-256 and
 * size, with their Merkle root; the object canonical_json serialises.
 */
export async function buildManifest({
  image,
  command,
  files = [],
  timeoutSeconds,
  maxOutputBytes,
  env = {},
  outputPath = "/out",
  verification = null,
  stores = [],
}) {
  if (!IMAGE.test(image || ""))
    throw new Error(`image: pin it by digest as name@sha256:<64 lowercase hex>, not ${JSON.stringify(image)}`);
  if (!Array.isArray(command) || !command.length || !command[0]) throw new Error("command: name the program to run");
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds <= 0)
    throw new Error("timeout: a whole number of seconds above 0");
  if (!Number.isInteger(maxOutputBytes) || maxOutputBytes <= 0)
    throw new Error("max output bytes: a whole number above 0");
  const seen = new Set();
  for (const { path } of files) {
    const problem = portableProblem(path);
    if (problem) throw new Error(`input ${JSON.stringify(path)} ${problem}`);
    if (seen.has(path)) throw new Error(`input ${JSON.stringify(path)} is given twice`);
    seen.add(path);
  }
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const inputs = [];
  for (const { path, bytes } of sorted) inputs.push({ path, size: bytes.length, sha256: await sha256Hex(bytes) });
  const root = files.length ? treeFromFiles(files.map((f) => [f.path, f.bytes])).root : ZERO_ROOT;
  const manifest = {
    version: 1,
    image,
    command: [...command],
    env: { ...env },
    inputs: { files: inputs, root },
    outputs: { path: outputPath, max_bytes: maxOutputBytes },
    timeout_seconds: timeoutSeconds,
  };
  const section = verificationSection(verification);
  if (section) manifest.verification = section;
  if (stores.length) manifest.stores = stores.map((s) => s.replace(/\/+$/, ""));
  return manifest;
}

// Python's json.dumps(ensure_ascii=False): only '"', '\\' and control characters are escaped.
const SHORT_ESCAPES = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };

function jsonString(s) {
  return (
    '"' +
    s.replace(/["\\\u0000-\u001f]/g, (c) => SHORT_ESCAPES[c] ?? "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")) +
    '"'
  );
}

function canonical(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`canonical JSON holds integers only, not ${value}`);
    return String(value);
  }
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return jsonString(value);
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  const keys = Object.keys(value).sort(); // every key is ASCII, so UTF-16 order is code-point order
  return "{" + keys.map((k) => jsonString(k) + ":" + canonical(value[k])).join(",") + "}";
}

/** The manifest's one byte form (Uint8Array). */
export function canonicalJson(manifest) {
  return new TextEncoder().encode(canonical(manifest));
}

/** keccak256 of the canonical JSON, 0x-hex: what the job commits to on chain. */
export function manifestHash(manifest) {
  return keccak256(canonicalJson(manifest));
}

const ASSIGN_SLACK = 5n; // seconds of blocks between an assignment and its agent's look at the lease

/** The manifest's wall-clock limit: the lease (GPU-seconds over the GPUs, plus the market's
 * grace, as Requirements.lease_seconds) less what an agent keeps to submit, so no agent
 * declines the job as "lease too short". */
export function runTimeout(req, config) {
  const gpus = req.gpu_count > 0n ? req.gpu_count : 1n;
  const lease = (req.max_gpu_seconds + gpus - 1n) / gpus + BigInt(config.parameters.lease_grace);
  const timeout = lease - BigInt(config.submitMargin) - ASSIGN_SLACK;
  if (timeout < 1n) {
    throw new PlainError(
      `A lease of ${lease} s leaves no time to run: agents keep ${config.submitMargin} s of it to submit. Raise the max GPU-seconds.`,
    );
  }
  return Number(timeout);
}
