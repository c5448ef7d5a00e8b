// `npm run docs:config`: rewrites README.md's configuration table from the settings table.
import { readFileSync, writeFileSync } from 'node:fs';
import { withSettingsTable } from '../src/config/settings-docs.ts';

const path = new URL('../README.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = withSettingsTable(before);
writeFileSync(path, after);
console.log(
  before === after ? 'README.md configuration table is up to date' : 'README.md configuration table rewritten',
);
