// The deployment the page talks to, as the gateway describes it at ./config.json.
const REQUIRED = ["chainId", "rpcUrl", "network", "contracts", "token", "storeUrl", "abis", "reverts"];

export async function loadConfig(url = "./config.json") {
  let answer;
  try {
    answer = await fetch(url, { cache: "no-store" });
  } catch (error) {
    throw new Error(`The gateway did not answer ${url}: ${error.message}`);
  }
  if (!answer.ok) throw new Error(`The gateway answered ${answer.status} for ${url}.`);
  const config = await answer.json();
  const missing = REQUIRED.filter((key) => config[key] === undefined);
  if (missing.length) throw new Error(`${url} lacks ${missing.join(", ")}.`);
  // The gateway serves the page and the API from one origin: /app/ -> the API at /.
  config.gateway = config.gateway ?? new URL("..", new URL(url, location.href)).href.replace(/\/$/, "");
  return config;
}
