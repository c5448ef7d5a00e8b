// Process measurements for the side-by-side bench: CPU seconds and RSS from
// /proc (Linux), PostgreSQL's CPU as its postmaster and backends spent it,
// and the SVG chart of the results.
import { readdirSync, readFileSync } from 'node:fs';

const ticksPerSecond = 100; // USER_HZ on Linux

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces; everything after its closing parenthesis is space-separated.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used; with `children`, also its reaped children's. */
export function cpuSeconds(pid: number, children = false): number {
  const fields = statFields(pid);
  if (!fields) return 0;
  // After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
  const own = Number(fields[11]) + Number(fields[12]);
  const reaped = children ? Number(fields[13]) + Number(fields[14]) : 0;
  return (own + reaped) / ticksPerSecond;
}

/**
 * CPU seconds of a PostgreSQL cluster: its postmaster (with the backends it
 * has reaped) plus every backend still running. Deltas of this over a phase
 * count the database work of that phase, connections that came and went included.
 */
export function postgresCpuSeconds(postmasterPid: number): number {
  let total = cpuSeconds(postmasterPid, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields && Number(fields[1]) === postmasterPid) total += cpuSeconds(Number(entry));
  }
  return total;
}

/** Resident set size of a process in MB, or 0 once it is gone. */
export function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** A process and its descendants (children, grandchildren, …) as /proc lists them now: pid and command line. */
export function processTree(root: number): Array<{ pid: number; command: string }> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = Number(statFields(Number(entry))?.[1]);
    if (!Number.isFinite(parent)) continue;
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  if (statFields(root)) visit(root);
  return tree.map((pid) => ({ pid, command: commandLine(pid) }));
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Resident set size of a process and all its descendants, summed (MB). */
export function treeRssMb(root: number): number {
  return processTree(root).reduce((sum, each) => sum + rssMb(each.pid), 0);
}

/** Samples the RSS of `pids()` every `intervalMs` (default 100); `stop()` answers the peak (MB) of their sum. */
export function sampleRss(pids: () => number[], intervalMs = 100): { stop(): number } {
  let peak = 0;
  const sample = () => {
    peak = Math.max(
      peak,
      pids().reduce((sum, pid) => sum + rssMb(pid), 0),
    );
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** A horizontal bar chart (SVG text) of messages per second by contender. */
export function throughputChart(rows: Array<{ name: string; value: number }>, title: string): string {
  const width = 720;
  const barHeight = 26;
  const left = 260;
  const top = 40;
  const max = Math.max(...rows.map((row) => row.value), 1);
  const bars = rows
    .map((row, index) => {
      const y = top + index * (barHeight + 10);
      const length = ((width - left - 90) * row.value) / max;
      return [
        `<text x="${left - 10}" y="${y + 18}" text-anchor="end">${escapeXml(row.name)}</text>`,
        `<rect x="${left}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="#3b82f6"/>`,
        `<text x="${(left + length + 6).toFixed(1)}" y="${y + 18}">${Math.round(row.value)}/s</text>`,
      ].join('');
    })
    .join('\n  ');
  const height = top + rows.length * (barHeight + 10) + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">
  <text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>
  ${bars}
</svg>
`;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
