// `npm start` in a terminal: util-linux `script` gives it a pseudo-terminal,
// as a person's shell would. On a terminal the log is pino-pretty; piped, it
// is JSON; LOG_FORMAT overrides either way. Ctrl-C (sent through the terminal)
// stops it cleanly.
import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { launch } from '../support/processes.ts';
import { root } from './support.ts';

/** ANSI control sequences (ESC [ … letter): pino-pretty's colours, npm's cursor moves for its spinner. */
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g');
/** Text a terminal erases: whatever precedes "cursor to column 1, erase line" (npm's progress spinner). */
const erased = new RegExp(`[^\\n]*${String.fromCharCode(27)}\\[1G${String.fromCharCode(27)}\\[0K`, 'g');

/** Runs `npm start` (in a pseudo-terminal when `terminal`), waits until it is up, presses Ctrl-C; returns the output. */
async function npmStart(
  env: Record<string, string>,
  terminal: boolean,
): Promise<{ output: string; code: number | null }> {
  const npm = terminal
    ? launch('script', { args: ['-qfec', 'npm start', '/dev/null'], cwd: root, env, stdin: true })
    : launch('npm', { args: ['start'], cwd: root, env, group: true });
  // Up, or gone without coming up (a refused setting): either way the output says which.
  await npm
    .waitForLine((line) => String(line.msg).replace(ansi, '').includes('job-manager is up'), 60_000)
    .catch(() => {});
  // Ctrl-C: through the terminal, or to npm's process group as a shell would.
  if (npm.alive) {
    if (terminal) npm.write('\x03');
    else process.kill(-npm.pid, 'SIGINT');
  }
  // npm's group when detached: the service shares npm's output pipe, and 'close' waits for it too.
  const force = setTimeout(() => npm.killGroup(), 30_000);
  const { code } = await npm.exited;
  clearTimeout(force);
  // What the terminal shows: the spinner npm erased is gone (the launcher ends lines at CRLF too).
  return { output: npm.output().replace(erased, '').replace(ansi, ''), code };
}

/** The lines the service logged (npm's own "> job-manager start" header and the terminal's ^C echo left out). */
function logLines(output: string): string[] {
  return output
    .split('\n')
    .map((line) => line.replace(/^\^C/, ''))
    .filter((line) => line.trim() !== '' && !line.startsWith('>'));
}

function isJsonLogLine(line: string): boolean {
  try {
    const parsed = JSON.parse(line);
    return typeof parsed === 'object' && parsed !== null && 'level' in parsed && 'msg' in parsed;
  } catch {
    return false;
  }
}

describe('npm start in a terminal', function () {
  this.timeout(120_000);
  const db = useTestDatabase();
  const env = () => ({ DATABASE_URL: db().url, PORT: '0' });

  it('prints pretty, human-readable lines on a terminal', async () => {
    const { output } = await npmStart(env(), true);
    const lines = logLines(output);
    expect(lines.filter(isJsonLogLine), 'JSON lines on a terminal').to.deep.equal([]);
    expect(output).to.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: job-manager is up$/m);
    expect(output).to.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: WEBHOOK_URL is not set/m);
    expect(output).to.match(/^ {4}port: \d+$/m);
    expect(output).to.match(/INFO: stopped$/m);
  });

  it('prints JSON on a terminal with LOG_FORMAT=json', async () => {
    const { output } = await npmStart({ ...env(), LOG_FORMAT: 'json' }, true);
    const lines = logLines(output);
    expect(lines.length).to.be.above(3);
    for (const line of lines) expect(isJsonLogLine(line), line).to.equal(true);
    expect(lines.map((line) => JSON.parse(line).msg))
      .to.include('job-manager is up')
      .and.to.include('stopped');
  });

  it('prints JSON when stdout is not a terminal, pretty with LOG_FORMAT=pretty', async () => {
    const piped = logLines((await npmStart(env(), false)).output);
    expect(piped.length).to.be.above(3);
    for (const line of piped) expect(isJsonLogLine(line), line).to.equal(true);

    const pretty = (await npmStart({ ...env(), LOG_FORMAT: 'pretty' }, false)).output;
    expect(logLines(pretty).filter(isJsonLogLine)).to.deep.equal([]);
    expect(pretty).to.match(/INFO: job-manager is up$/m);
  });

  it('refuses an unknown LOG_FORMAT, naming the key', async () => {
    const { output, code } = await npmStart({ ...env(), LOG_FORMAT: 'xml' }, false);
    expect(code).to.not.equal(0);
    expect(output).to.include('LOG_FORMAT');
  });
});
