// Uploads to the content store: PUT {storeUrl}/blobs answers {sha256, keccak256, size}, and
// the page checks those names against its own hashes (a store that changes a byte is caught).
import { keccak256 } from "viem";
import { sha256Hex } from "./manifest.js";

export async function putBlob(storeUrl, bytes) {
  const expected = { sha256: await sha256Hex(bytes), keccak256: keccak256(bytes).slice(2), size: bytes.length };
  let answer;
  try {
    answer = await fetch(`${storeUrl.replace(/\/+$/, "")}/blobs`, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes,
    });
  } catch (error) {
    throw new Error(`The content store at ${storeUrl} did not answer: ${error.message}`);
  }
  if (!answer.ok) {
    const why = (await answer.text()).slice(0, 200);
    throw new Error(`The content store refused the upload: ${answer.status} ${why}`);
  }
  const named = await answer.json();
  for (const key of ["sha256", "keccak256", "size"])
    if (String(named[key]).replace(/^0x/, "").toLowerCase() !== String(expected[key]))
      throw new Error(`The content store filed the upload under a wrong ${key}: ${named[key]}, not ${expected[key]}.`);
  return expected;
}
