// Small DOM helpers: elements by test id, building rows, the status and error lines.

export const byId = (testid, root = document) => root.querySelector(`[data-testid="${CSS.escape(testid)}"]`);

/** An element: el("tr", {dataset: {testid: "x"}}, child, "text", ...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [key, value] of Object.entries(dataset || {})) node.dataset[key] = value;
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false)
    node.append(child instanceof Node ? child : String(child));
  return node;
}

export function status(text) {
  byId("status").textContent = text;
}

export function showError(text) {
  byId("error").textContent = text || "";
}

export const field = (testid) => byId(testid).value.trim();

/** A whole number from a form field; a clear error naming the field otherwise. */
export function wholeNumber(testid, label, { min = 0 } = {}) {
  const text = field(testid);
  if (!/^\d+$/.test(text) || BigInt(text) < BigInt(min))
    throw new Error(`${label}: a whole number of at least ${min}, not ${JSON.stringify(text)}`);
  return BigInt(text);
}

export const short = (address) => (address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "");
