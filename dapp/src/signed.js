// Requests signed by the caller's key (computenet/signed_requests.py): the wallet signs
//   computenet <scope>|<chain id>|<server address, lowercase>|<request>|<expires>
// with personal_sign, and the headers carry address, expiry and signature.

export const VALIDITY = 60; // seconds; the servers refuse more than 300

export function requestMessage(scope, chainId, server, request, expires) {
  return `computenet ${scope}|${chainId}|${server.toLowerCase()}|${request}|${expires}`;
}

/** Python's urllib.parse.quote_plus: UTF-8, space as '+', only A-Z a-z 0-9 _ . - ~ kept. */
export function quotePlus(text) {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9_.~-]/.test(c)) out += c;
    else if (c === " ") out += "+";
    else out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** The agent's path for a replica's index, or for one file when `path` is given (computenet/outputs.py). */
export function outputsPath(job, shard, replica, path) {
  const base = `/outputs/${job}/${shard}/${replica}`;
  return path === undefined ? base : `${base}/file?path=${quotePlus(path)}`;
}

/** Headers that authorise `request` ("GET /path?query") at `server`; `sign(message)` is personal_sign. */
export async function signedHeaders(sign, address, scope, chainId, server, request, now = Date.now() / 1000) {
  const expires = Math.floor(now) + VALIDITY;
  const signature = await sign(requestMessage(scope, chainId, server, request, expires));
  return {
    "X-Computenet-Address": address,
    "X-Computenet-Expires": String(expires),
    "X-Computenet-Signature": signature,
  };
}
