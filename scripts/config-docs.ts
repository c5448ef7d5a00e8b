// `npm run docs:config`: rewrites the configuration table of docs/configuration.md from the settings table.
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsDocsPath, withSettingsTable } from '../src/config/settings-docs.ts';

const path = new URL(`../${settingsDocsPath}`, import.meta.url);
const before = readFileSync(path, 'utf8');
const after = withSettingsTable(before);
writeFileSync(path, after);
console.log(
  before === after
    ? `${settingsDocsPath} configuration table is up to date`
    : `${settingsDocsPath} configuration table rewritten`,
);
