import { setTimeout as sleep } from 'node:timers/promises';
import type { Proxy as ToxiProxy } from 'toxiproxy-node-client';
import { BackendSampler } from '../faults/support/backend-sampler.ts';
import { PgCluster } from '../faults/support/cluster.ts';
import { http, type ServicePod, startFaultPod } from '../faults/support/kit.ts';
import { Receiver } from '../faults/support/receiver.ts';
import { type RunningToxiproxy, startToxiproxy } from '../faults/support/toxiproxy.ts';
import type { History } from './history.ts';
import { podSettings } from './settings.ts';

/**
 * One pod slot: the process running in it now (a fresh INSTANCE_ID per start,
 * so a killed incarnation's lingering backends are never counted against the
 * next one's budget), whether it is frozen, and how many times it started.
 */
export interface PodSlot {
  name: string;
  pod: ServicePod | undefined;
  incarnation: number;
  frozen: boolean;
  /** Set while the harness is (re)starting it. */
  starting: Promise<void> | undefined;
}

/**
 * The soak's world: a throwaway PostgreSQL cluster (database `soak`),
 * Toxiproxy in front of it (every pod connects through the proxy; the harness
 * cuts, black-holes or disables it), the recording webhook the pods deliver
 * to, the pods themselves, and a sampler of each pod's backends in
 * pg_stat_activity (direct, not through the proxy).
 */
export class Rig {
  readonly cluster: PgCluster;
  readonly toxiproxy: RunningToxiproxy;
  readonly proxy: ToxiProxy;
  readonly proxyPort: number;
  readonly receiver: Receiver;
  readonly sampler: BackendSampler;
  readonly slots: PodSlot[] = [];
  readonly history: History;
  databaseUp = true;

  private constructor(
    cluster: PgCluster,
    toxiproxy: RunningToxiproxy,
    proxy: { proxy: ToxiProxy; port: number },
    receiver: Receiver,
    history: History,
  ) {
    this.cluster = cluster;
    this.toxiproxy = toxiproxy;
    this.proxy = proxy.proxy;
    this.proxyPort = proxy.port;
    this.receiver = receiver;
    this.history = history;
    this.sampler = new BackendSampler([cluster]);
  }

  /** Builds the world and starts `pods` pods; throws when Toxiproxy is not installed. */
  static async build(pods: number, history: History): Promise<Rig> {
    const cluster = await PgCluster.create();
    await cluster.query('CREATE DATABASE soak');
    const toxiproxy = await startToxiproxy();
    if (!toxiproxy) {
      await cluster.destroy();
      throw new Error('the soak needs Toxiproxy: go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0');
    }
    const proxy = await toxiproxy.proxy('soak-postgres', `127.0.0.1:${cluster.port}`);
    const receiver = await new Receiver().start();
    const rig = new Rig(cluster, toxiproxy, proxy, receiver, history);
    rig.sampler.start();
    for (let index = 0; index < pods; index += 1)
      rig.slots.push({ name: `p${index + 1}`, pod: undefined, incarnation: 0, frozen: false, starting: undefined });
    // The first pod migrates alone; the others start once the schema is there.
    await rig.start(rig.slots[0]!);
    await Promise.all(rig.slots.slice(1).map((slot) => rig.start(slot)));
    return rig;
  }

  /** Pods that are running and not frozen (the workload may still pick a frozen one: see anyPod). */
  livePods(): ServicePod[] {
    return this.slots.flatMap((slot) => (slot.pod?.alive && !slot.frozen ? [slot.pod] : []));
  }

  /** Any running pod, frozen ones included (a client does not know a pod is frozen). */
  runningPods(): ServicePod[] {
    return this.slots.flatMap((slot) => (slot.pod?.alive ? [slot.pod] : []));
  }

  /**
   * Starts the slot's next incarnation, again and again until one serves HTTP
   * (a start may fail while the database is down: its exit is recorded in the
   * history). Resolves once it is up.
   */
  start(slot: PodSlot): Promise<void> {
    slot.starting ??= (async () => {
      for (;;) {
        slot.incarnation += 1;
        const name = `${slot.name}-${slot.incarnation}`;
        try {
          slot.pod = await startFaultPod(name, this.#env(), 90_000);
          slot.frozen = false;
          return;
        } catch (error) {
          this.history.failedStarts.push({ at: Date.now(), pod: name, code: null, tail: String(error).slice(-2_000) });
          if (slot.incarnation > 60) throw new Error(`${slot.name} did not start 60 times in a row: ${error}`);
          await sleep(1_000);
        }
      }
    })().finally(() => {
      slot.starting = undefined;
    });
    return slot.starting;
  }

  /** SIGKILL to the slot's process group (the pod is gone at once). */
  async kill(slot: PodSlot): Promise<void> {
    const pod = slot.pod;
    if (!pod) return;
    pod.killGroup();
    await pod.exited;
    slot.frozen = false;
  }

  freeze(slot: PodSlot, frozen: boolean): void {
    if (!slot.pod?.alive) return;
    slot.pod.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
    slot.frozen = frozen;
  }

  async stopDatabase(): Promise<void> {
    this.databaseUp = false;
    await this.cluster.stop();
  }

  async startDatabase(): Promise<void> {
    await this.cluster.start();
    this.databaseUp = true;
  }

  /** Enables or disables the proxy (disabled: every connection closed, new ones refused). */
  async proxyEnabled(enabled: boolean): Promise<void> {
    await this.proxy.update({ enabled, listen: this.proxy.listen, upstream: this.proxy.upstream });
  }

  /** Puts everything right: pods thawed and running, the database up, the proxy clean and enabled, the webhook accepting. */
  async heal(): Promise<void> {
    this.receiver.policy = () => ({ kind: 'accept' });
    this.receiver.latencyMs = 0;
    if (!this.databaseUp) await this.startDatabase();
    await this.toxiproxy.client.reset();
    for (const slot of this.slots) this.freeze(slot, false);
    await Promise.all(this.slots.filter((slot) => !slot.pod?.alive).map((slot) => this.start(slot)));
  }

  /** A GET on a live pod (any that answers), undefined when none does. */
  async get(path: string): Promise<any> {
    for (const pod of this.livePods()) {
      const answer = await http(pod.url, 'GET', path, undefined, 3_000);
      if (answer.status === 200) return answer.body;
    }
    return undefined;
  }

  async tearDown(): Promise<void> {
    await this.sampler.stop();
    for (const slot of this.slots) if (slot.pod?.alive) slot.pod.kill('SIGCONT');
    await Promise.all(this.slots.map((slot) => slot.pod?.stop('SIGTERM', 15_000)));
    await this.toxiproxy.stop().catch(() => {});
    await this.receiver.close().catch(() => {});
    await this.cluster.destroy().catch(() => {});
  }

  #env(): Record<string, string> {
    return {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${this.proxyPort}/soak`,
      WEBHOOK_URL: this.receiver.url,
      ...podSettings,
    };
  }
}
