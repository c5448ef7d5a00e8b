import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect } from 'chai';
import { settingNames } from '../../src/config/settings.ts';

/**
 * The layout kept visible: rooms of src/ with dependencies pointing inward
 * only, no cycles, the composition root wiring.
 * Type-only imports count: they are dependencies too.
 */
const src = new URL('../../src/', import.meta.url).pathname;

/** Inner rooms first; a module may import its own room or a room of a lower rank. */
const rank: Record<string, number> = {
  'api/': 0,
  'lib/': 0,
  'errors.ts': 0,
  'observability/': 1,
  'config/': 2,
  'db/': 3,
  'messages/': 4,
  'delivery/': 4,
  'jobs/': 4,
  'engine/': 5,
  'http/': 5,
  'maintenance/': 5,
  'service.ts': 6,
  'main.ts': 7,
  'sink/': 7,
  'tools/': 7,
};

/**
 * Rooms that must not know of others, whatever their rank: the engine runs any
 * handler and knows no domain (the composition root registers `send-messages`),
 * and the use cases know neither the engine nor HTTP.
 */
const forbidden: Record<string, string[]> = {
  'engine/': ['messages/', 'delivery/', 'jobs/', 'http/'],
  'messages/': ['engine/', 'http/'],
  'delivery/': ['engine/', 'http/'],
  'maintenance/': ['engine/', 'http/', 'delivery/', 'jobs/'],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

function roomOf(file: string): string {
  const path = relative(src, file);
  return path.includes('/') ? `${path.split('/')[0]}/` : path;
}

const modules = files(src);
const imports = new Map(
  modules.map((file) => {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((m) =>
      resolve(dirname(file), m[1]!),
    );
    return [file, targets] as const;
  }),
);

describe('layout', () => {
  it('has a rank for every room', () => {
    expect(modules.map(roomOf).filter((room) => rank[room] === undefined)).to.deep.equal([]);
  });

  it('has no import pointing outward (messages/ never imports engine/ or http/)', () => {
    const outward: string[] = [];
    for (const [file, targets] of imports) {
      for (const target of targets) {
        const from = roomOf(file);
        const to = roomOf(target);
        if (from !== to && rank[to]! >= rank[from]!) outward.push(`${relative(src, file)} -> ${relative(src, target)}`);
      }
    }
    expect(outward).to.deep.equal([]);
  });

  it('keeps the engine free of the domain, and the use cases free of the engine and HTTP', () => {
    const crossing: string[] = [];
    for (const [file, targets] of imports) {
      const banned = forbidden[roomOf(file)] ?? [];
      for (const target of targets)
        if (banned.includes(roomOf(target))) crossing.push(`${relative(src, file)} -> ${relative(src, target)}`);
    }
    expect(crossing).to.deep.equal([]);
  });

  it('has no import cycle', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(src, f)).join(' -> '));
        return;
      }
      state.set(file, 'visiting');
      for (const target of imports.get(file) ?? []) visit(target, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of modules) visit(file, []);
    expect(cycles).to.deep.equal([]);
  });

  it('keeps the engine classes inside src/engine/', () => {
    const leaking = modules
      .filter((file) => roomOf(file) !== 'engine/')
      .filter((file) => /\b(Scheduler|WorkerPool|RunExecutor|HandlerFactory)\b/.test(readFileSync(file, 'utf8')));
    expect(leaking.map((file) => relative(src, file))).to.deep.equal([]);
  });

  it('reads process.env only in src/config/ and entry points', () => {
    const readers = modules
      .filter((file) => readFileSync(file, 'utf8').includes('process.env'))
      .map((file) => relative(src, file))
      .filter((path) => !path.startsWith('config/') && !/(^|\/)(main|[a-z-]+-cli)\.ts$/.test(path));
    expect(readers).to.deep.equal([]);
  });

  it('names each setting in one source file under src/config/', () => {
    const configFiles = modules.filter((file) => roomOf(file) === 'config/');
    const spread = settingNames
      .map((name) => ({
        name,
        files: configFiles.filter((file) => new RegExp(`\\b${name}\\b`).test(readFileSync(file, 'utf8'))),
      }))
      .filter(({ files }) => files.length !== 1)
      .map(({ name, files }) => `${name}: ${files.map((file) => relative(src, file)).join(', ') || 'none'}`);
    expect(spread).to.deep.equal([]);
  });

  it('runs no SQL in the composition root', () => {
    const root = readFileSync(join(src, 'service.ts'), 'utf8');
    expect(root).not.to.match(/sqlc\/|\.query\(/);
  });
});
