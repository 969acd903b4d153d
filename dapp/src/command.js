// A job's command from the form: a JSON array of strings, or a shell-like line split on spaces
// with '…' and "…" quoting and backslash escapes (no variables, globs or pipes: there is no shell).

export function parseCommand(text) {
  const line = text.trim();
  if (!line) throw new Error("command: name the program to run");
  if (line.startsWith("[")) {
    let parsed;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new Error(`command: not a JSON array: ${error.message}`);
    }
    if (!Array.isArray(parsed) || !parsed.length || !parsed.every((a) => typeof a === "string"))
      throw new Error("command: a JSON command is a non-empty array of strings");
    return parsed;
  }
  const args = [];
  let current = null; // null: between words
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else current += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) current += line[++i];
      else current += c;
    } else if (/\s/.test(c)) {
      if (current !== null) args.push(current);
      current = null;
    } else {
      current ??= "";
      if (c === "'" || c === '"') quote = c;
      else if (c === "\\" && i + 1 < line.length) current += line[++i];
      else current += c;
    }
  }
  if (quote) throw new Error(`command: unclosed ${quote} quote`);
  if (current !== null) args.push(current);
  return args;
}
