// Every relative link in README.md and docs/*.md reaches a file that exists
// and, with a #fragment into a Markdown file, a heading of that file (GitHub's
// anchors). Two links to a heading that had been renamed went unnoticed until
// a reader followed them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { expect } from 'chai';

const root = new URL('../../', import.meta.url).pathname;
const documents = [
  'README.md',
  ...readdirSync(join(root, 'docs'), { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.md'))
    .map((entry) => `docs/${entry.name}`),
];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2 … */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** The relative link targets of a Markdown text, outside code. */
function linksOf(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

describe('links in the README and docs', () => {
  for (const document of documents) {
    it(`${document}: every relative link and anchor resolves`, () => {
      const text = readFileSync(join(root, document), 'utf8');
      const broken: string[] = [];
      for (const link of linksOf(text)) {
        const [path, fragment] = link.split('#', 2) as [string, string | undefined];
        const target = path === '' ? join(root, document) : join(root, dirname(document), decodeURI(path));
        if (!existsSync(target)) {
          broken.push(`${link} (no ${relative(root, target)})`);
          continue;
        }
        if (
          fragment !== undefined &&
          target.endsWith('.md') &&
          !anchorsOf(readFileSync(target, 'utf8')).has(fragment)
        ) {
          broken.push(`${link} (no heading #${fragment} in ${relative(root, target)})`);
        }
      }
      expect(broken).to.deep.equal([]);
    });
  }
});
