/**
 * A strict reader of the Prometheus text exposition format (0.0.4), as a
 * scraper sees it: throws on any line that is not a comment, a HELP or
 * TYPE line, or a sample; on a sample whose family has no TYPE; on a
 * family declared twice; on label syntax errors.
 */
export interface Scrape {
  /** Metric family name -> type. */
  types: Map<string, string>;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
  /** The sum of the values of the samples of this name whose labels include these. */
  value(name: string, labels?: Record<string, string>): number;
  /** Whether some sample of this name has these labels. */
  has(name: string, labels?: Record<string, string>): boolean;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SUFFIXES = ["_bucket", "_count", "_sum", "_total", "_created", "_info"];

export function parsePrometheusText(text: string): Scrape {
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples: Scrape["samples"] = [];
  if (!text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  text.split("\n").forEach((line, i) => {
    const where = `line ${i + 1}: ${line.slice(0, 120)}`;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name!)) throw new Error(`bad metric name: ${where}`);
      if (kind === "TYPE") {
        if (types.has(name!)) throw new Error(`second TYPE for ${name}: ${where}`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest!)) throw new Error(`bad type: ${where}`);
        types.set(name!, rest!);
      } else {
        if (helped.has(name!)) throw new Error(`second HELP for ${name}: ${where}`);
        helped.add(name!);
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?[0-9]+)?$/.exec(line);
    if (!m) throw new Error(`not a sample: ${where}`);
    const name = m[1]!;
    const labels = m[3] === undefined ? {} : parseLabels(m[3], where);
    const value = parseValue(m[4]!, where);
    const family = types.has(name) ? name : SUFFIXES.map((s) => (name.endsWith(s) ? name.slice(0, -s.length) : "")).find((f) => f && types.has(f));
    if (!family) throw new Error(`sample without a TYPE: ${where}`);
    samples.push({ name, labels, value });
  });
  const matching = (name: string, labels: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    types,
    samples,
    value: (name, labels = {}) => matching(name, labels).reduce((sum, s) => sum + s.value, 0),
    has: (name, labels = {}) => matching(name, labels).length > 0,
  };
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)/y;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`bad labels at ${pos}: ${where}`);
    if (m[1]! in labels) throw new Error(`label ${m[1]} twice: ${where}`);
    labels[m[1]!] = m[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
    pos = re.lastIndex;
  }
  return labels;
}

/** As Prometheus reads values (Go's ParseFloat): Inf and NaN in any case (prom-client writes "Nan"). */
function parseValue(text: string, where: string): number {
  if (/^\+?inf$/i.test(text)) return Infinity;
  if (/^-inf$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  const v = Number(text);
  if (!/^[-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)$/.test(text) || Number.isNaN(v)) throw new Error(`bad value: ${where}`);
  return v;
}
