// Reading the Prometheus text exposition format in tests.

export interface MetricFamily {
  type: string;
  help: string;
  /** Label names seen on the samples (without histogram `le`). */
  labels: Set<string>;
  samples: number;
}

/** Families by name, from `# HELP` / `# TYPE` lines and their samples. */
export function parseExposition(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) {
      found = { type: 'untyped', help: '', labels: new Set(), samples: 0 };
      families.set(name, found);
    }
    return found;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') family(meta[2]!).type = meta[3]!;
      else family(meta[2]!).help = meta[3]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!sample) continue;
    const owner = familyOf(sample[1]!, families);
    const entry = family(owner);
    entry.samples++;
    for (const [, label] of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) {
      if (label !== 'le' && label !== 'quantile') entry.labels.add(label!);
    }
  }
  return families;
}

/** The family a sample belongs to: histogram/summary samples carry _bucket, _sum, _count. */
export function familyOf(sampleName: string, families: Map<string, MetricFamily>): string {
  if (families.has(sampleName)) return sampleName;
  const base = sampleName.replace(/_(bucket|sum|count|created)$/, '');
  return families.has(base) ? base : sampleName;
}

/** Every series name a PromQL query may use for these families (histograms add _bucket/_sum/_count). */
export function seriesNames(families: Map<string, MetricFamily>): Set<string> {
  const names = new Set<string>();
  for (const [name, { type }] of families) {
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}
