"""The dApp's pure modules (dapp/src) against the Python they mirror: the same Merkle roots and
proofs, the same manifest bytes and hash, the same signed-request message and agent paths.

Each check runs one small node script that imports the module itself (no bundle needed) and
answers JSON on stdout; the Python side computes the same from computenet.
"""

import json
import random
import shlex
import shutil
import subprocess
import urllib.parse
from pathlib import Path

from agent.plan import check_runnable
from computenet.domain import SUBMIT_MARGIN, Requirements, Verification
from computenet.manifest import build_manifest, canonical_json, manifest_hash
from computenet.merkle import MerkleTree
from computenet.signed_requests import request_message

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "dapp" / "src"
IMAGE = "registry.example/tool@sha256:" + "ab" * 32


def node(script: str, payload) -> object:
    """Runs `script` (an ES module body; `input` holds `payload`) and returns what it printed as JSON."""
    binary = shutil.which("node")
    assert binary, "node is not on PATH: the dApp's modules need Node.js (make node)"
    prelude = f"const input = JSON.parse(await new Response(process.stdin).text());\nconst src = {json.dumps(SRC.as_uri())};\n"
    done = subprocess.run(
        [binary, "--input-type=module", "-e", prelude + script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, f"node failed:\n{done.stderr}"
    return json.loads(done.stdout)


def hexed(value: bytes) -> str:
    return "0x" + value.hex()


# ---------------------------------------------------------------- merkle


def file_sets() -> list[dict[str, bytes]]:
    rng = random.Random(7)
    sets = []
    for size in (1, 2, 3, 5, 8, 13):
        sets.append({f"out/{rng.randrange(10**6)}-{i}.bin": rng.randbytes(rng.randrange(0, 64)) for i in range(size)})
    # Code-point order differs from UTF-16 order past the BMP: U+FFFF sorts before U+1F600 in Python.
    sets.append({"a\uffff": b"1", "a\U0001f600": b"2", "a": b"", "b/c": b"3"})
    return sets


def test_merkle_roots_and_proofs_match_python():
    sets = file_sets()
    payload = [{path: data.hex() for path, data in files.items()} for files in sets]
    script = """
const { treeFromFiles, verify } = await import(src + "/merkle.js");
const hex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const out = input.map((files) => {
  const tree = treeFromFiles(Object.entries(files).map(([p, h]) => [p, hex(h)]));
  const proofs = Object.fromEntries(tree.paths.map((p) => [p, tree.proof(p)]));
  const first = tree.paths[0];
  const bad = tree.proof(first).length ? [...tree.proof(first)].reverse().concat([tree.root]) : [tree.root];
  return {
    root: tree.root,
    paths: tree.paths,
    proofs,
    verified: tree.paths.every((p) => verify(tree.proof(p), tree.root, tree.leaf(p))),
    tampered: verify(bad, tree.root, tree.leaf(first)),
  };
});
console.log(JSON.stringify(out));
"""
    answers = node(script, payload)
    for files, got in zip(sets, answers, strict=True):
        tree = MerkleTree.from_files(files)
        assert got["root"] == hexed(tree.root)
        assert got["paths"] == tree.paths
        assert got["proofs"] == {p: [hexed(s) for s in tree.proof(p)] for p in tree.paths}
        assert got["verified"] is True
        assert got["tampered"] is False


def test_merkle_verify_refuses_what_python_refuses():
    tree = MerkleTree.from_files({"x": b"1", "y": b"2", "z": b"3"})
    good = [hexed(s) for s in tree.proof("y")]
    cases = {
        "good": (good, hexed(tree.leaf("y"))),
        "wrong leaf": (good, hexed(tree.leaf("x"))),
        "short sibling": ([good[0][:-2]], hexed(tree.leaf("y"))),
        "too deep": ([good[0]] * 33, hexed(tree.leaf("y"))),
        "not a list": ("0x00", hexed(tree.leaf("y"))),
    }
    script = """
const { verify } = await import(src + "/merkle.js");
console.log(JSON.stringify(Object.fromEntries(Object.entries(input.cases).map(([k, [proof, leaf]]) => [k, verify(proof, input.root, leaf)]))));
"""
    got = node(script, {"cases": cases, "root": hexed(tree.root)})
    assert got == {"good": True, "wrong leaf": False, "short sibling": False, "too deep": False, "not a list": False}


# ---------------------------------------------------------------- manifest

MANIFESTS = [
    {"command": ["true"], "files": {}, "timeout": 10, "max_bytes": 1},
    {
        "command": ["python", "/in/run.py", "--name", 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f'],
        "files": {
            "run.py": b"print('hi')\n",
            "data/records.jsonl": b'{"a": 1}\n' * 50,
            "z-last.bin": bytes(range(256)),
        },
        "timeout": 600,
        "max_bytes": 64 << 20,
        "env": {"MODE": "fast", "GREETING": "grüße, 世界 😀"},
    },
    {
        "command": ["sh", "-c", "echo spot > /out/x"],
        "files": {"a": b"1"},
        "timeout": 15,
        "max_bytes": 1 << 20,
        "verification": {"spot_check_bps": 2500},
        "stores": ["http://127.0.0.1:8700/", "https://mirror.example/store"],
        "output_path": "/results",
    },
]


def test_manifest_bytes_and_hash_match_python():
    payload = [{**m, "files": {p: d.hex() for p, d in m["files"].items()}, "image": IMAGE} for m in MANIFESTS]
    script = """
const { buildManifest, canonicalJson, manifestHash } = await import(src + "/manifest.js");
const hex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const out = [];
for (const m of input) {
  const manifest = await buildManifest({
    image: m.image, command: m.command, timeoutSeconds: m.timeout, maxOutputBytes: m.max_bytes,
    env: m.env ?? {}, verification: m.verification ?? null, stores: m.stores ?? [], outputPath: m.output_path ?? "/out",
    files: Object.entries(m.files).map(([path, h]) => ({ path, bytes: hex(h) })),
  });
  out.push({ bytes: Buffer.from(canonicalJson(manifest)).toString("hex"), hash: manifestHash(manifest) });
}
console.log(JSON.stringify(out));
"""
    answers = node(script, payload)
    for m, got in zip(MANIFESTS, answers, strict=True):
        built = build_manifest(
            IMAGE,
            m["command"],
            m["files"],
            timeout_seconds=m["timeout"],
            max_output_bytes=m["max_bytes"],
            env=m.get("env"),
            output_path=m.get("output_path", "/out"),
            verification=m.get("verification"),
            stores=m.get("stores"),
        )
        assert bytes.fromhex(got["bytes"]).decode() == canonical_json(built).decode()
        assert got["hash"] == hexed(manifest_hash(built))


def test_manifest_mistakes_are_named():
    cases = {
        "tag": {"image": "python:3.11", "command": ["true"], "files": []},
        "empty command": {"image": IMAGE, "command": [""], "files": []},
        "bad path": {"image": IMAGE, "command": ["true"], "files": ["my file.txt"]},
        "dot dot": {"image": IMAGE, "command": ["true"], "files": ["../x"]},
    }
    script = """
const { buildManifest } = await import(src + "/manifest.js");
const out = {};
for (const [name, c] of Object.entries(input)) {
  try {
    await buildManifest({ image: c.image, command: c.command, timeoutSeconds: 1, maxOutputBytes: 1,
      files: c.files.map((path) => ({ path, bytes: new Uint8Array() })) });
    out[name] = null;
  } catch (error) { out[name] = error.message; }
}
console.log(JSON.stringify(out));
"""
    got = node(script, cases)
    assert got["tag"].startswith("image: pin it by digest")
    assert got["empty command"] == "command: name the program to run"
    assert (
        got["bad path"]
        == 'input "my file.txt" has the character " ", outside the portable set A-Z a-z 0-9 . _ - + , = @ ~'
    )
    assert got["dot dot"].startswith('input "../x" must be a normalised POSIX path')


def test_the_manifest_timeout_fits_the_lease_an_agent_checks():
    """The page's timeout leaves SUBMIT_MARGIN of the lease (Requirements.lease_seconds), so the
    agent's own check (agent/plan.py) never declines a job from the page as "lease too short"."""
    script = """
const { runTimeout } = await import(src + "/manifest.js");
const config = { parameters: { lease_grace: input.grace }, submitMargin: input.margin };
console.log(JSON.stringify(input.cases.map(([seconds, gpus]) => {
  try { return runTimeout({ max_gpu_seconds: BigInt(seconds), gpu_count: BigInt(gpus) }, config); }
  catch (error) { return error.message; }
})));
"""
    cases = [(30, 0), (3600, 1), (3601, 8), (10, 0)]
    answers = node(script, {"grace": 20, "margin": SUBMIT_MARGIN, "cases": cases})
    for (seconds, gpus), timeout in zip(cases[:3], answers):
        lease = Requirements(0, gpus, 1, seconds, 0).lease_seconds(20)
        assert timeout == lease - SUBMIT_MARGIN - 5
        manifest = build_manifest(IMAGE, ["true"], {}, timeout_seconds=timeout, max_output_bytes=1 << 20)
        check_runnable(manifest, now=5, lease_end=lease, job_gpu_count=gpus, asset_gpu_count=max(gpus, 1))
    assert answers[3].startswith("A lease of 30 s leaves no time to run")


# ---------------------------------------------------------------- signed requests and commands

PATHS = ["out/result.json", "out/a b+c~d.txt", "out/ünï/😀=@,.bin", "log", "out/100%/x&y=z?"]


def test_signed_request_message_and_agent_paths_match_python():
    agent = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    script = """
const { requestMessage, outputsPath } = await import(src + "/signed.js");
console.log(JSON.stringify({
  messages: input.paths.map((p) => requestMessage("outputs", 31337, input.agent, "GET " + outputsPath(7, 1, 2, p), 1700000000)),
  index: outputsPath(7, 1, 2),
}));
"""
    got = node(script, {"paths": PATHS, "agent": agent})
    expected = [
        request_message(
            "outputs", 31337, agent, "GET /outputs/7/1/2/file?" + urllib.parse.urlencode({"path": p}), 1700000000
        )
        for p in PATHS
    ]
    assert got["messages"] == expected
    assert got["index"] == "/outputs/7/1/2"
    assert (
        expected[0]
        == f"computenet outputs|31337|{agent.lower()}|GET /outputs/7/1/2/file?path=out%2Fresult.json|1700000000"
    )


LINES = ["python /in/run.py --n 3", "sh -c 'echo hi > /out/x'", 'echo "a \\"quoted\\" word" b\\ c', "  spaced   out  "]


def test_command_lines_split_as_shlex_does():
    script = """
const { parseCommand } = await import(src + "/command.js");
console.log(JSON.stringify(input.map(parseCommand)));
"""
    assert node(script, LINES) == [shlex.split(line) for line in LINES]
    assert node(script, ['["python", "-c", "print(1)"]']) == [["python", "-c", "print(1)"]]


def test_revert_reasons_become_plain_sentences():
    script = """
const { plainMessage, REJECTED } = await import(src + "/errors.js");
const reverts = { "job_market: deadline too soon": "The deadline is too close." };
const revert = (reason) => Object.assign(new Error("x"), { name: "ContractFunctionRevertedError", reason });
console.log(JSON.stringify([
  plainMessage({ shortMessage: "call failed", cause: revert("job_market: deadline too soon") }, reverts),
  plainMessage(revert("job_market: paused"), reverts),
  plainMessage({ message: "wrapped", cause: { code: 4001, message: "User rejected" } }, reverts) === REJECTED,
]));
"""
    assert node(script, None) == [
        "The deadline is too close.",
        "The contract refused: job_market: paused",
        True,
    ]


# ---------------------------------------------------------------- a job's view


def test_a_job_view_names_its_mode_and_a_zk_jobs_proven_and_a_tee_jobs_attested_replicas():
    """jobview.js reads the gateway's GET /jobs/{id} (tests/gateway/test_gateway_jobs.py checks
    the gateway's side): modes by the SDK's names, and "proven" where the chain checked a zk proof."""
    model = "0x" + "ab" * 32
    replica = {"replica": 0, "state": "finalized", "asset": 3, "proven": True}
    zk_view = {
        "verification": "zk",
        "model": model,
        "escrow": 5,
        "unfinished": 1,
        "finished": False,
        "shards": [
            {"shard": 0, "state": "finalized", "replicas": [replica], "waiting": {}},
            {"shard": 1, "state": "finalized", "replicas": [{**replica, "proven": False}], "waiting": {}},
            {"shard": 2, "state": "open", "replicas": [{**replica, "state": "open", "asset": 0, "proven": False}]},
        ],
    }
    plain = {"requirements": {"verification": 0}, "escrow": 7, "unfinished": 0, "finished": True, "shards": []}
    attested = {"replica": 0, "state": "submitted", "asset": 4, "proven": False, "attested": True}
    tee_view = {
        "verification": "tee",
        "escrow": 9,
        "unfinished": 1,
        "finished": False,
        "shards": [{"shard": 0, "state": "submitted", "replicas": [attested], "waiting": {}}],
    }
    script = """
const v = await import(src + "/jobview.js");
console.log(JSON.stringify({
  names: v.VERIFICATION_NAMES,
  postable: v.POSTABLE_VERIFICATION,
  byNumber: [0, 1, 2, 3, 9].map(v.verificationName),
  titles: [v.jobTitle(4, input.zk), v.jobTitle(5, input.plain)],
  lines: input.zk.shards.map(v.shardLine),
  states: input.zk.shards.map((s) => v.replicaState(s.replicas[0])),
  tee: [v.jobTitle(6, input.tee), v.shardLine(input.tee.shards[0])],
}));
"""
    got = node(script, {"zk": zk_view, "plain": plain, "tee": tee_view})
    assert got["names"] == [mode.name.lower() for mode in Verification]
    # zk is posted bound to its model, through `ape run job post`
    assert got["postable"] == {"optimistic": 0, "replicated": 1, "spot_check": 2, "tee": 4}
    assert got["byNumber"] == ["optimistic", "replicated", "spot_check", "zk", "verification 9"]
    assert got["titles"] == [
        "job 4 (zk, model 0xababab…abab): escrow 5, 1 unfinished",
        "job 5 (optimistic): escrow 7, 0 unfinished, finished",
    ]
    assert got["lines"] == [
        "shard 0: finalized · asset 3 · r0 proven",
        "shard 1: finalized · asset 3",  # a failed zk run, finalized the optimistic way
        "shard 2: open · no asset yet",
    ]
    assert got["states"] == ["proven", "finalized", "open"]
    assert got["tee"] == ["job 6 (tee): escrow 9, 1 unfinished", "shard 0: submitted · asset 4 · r0 attested"]
