// A real 3-node NATS cluster on 127.0.0.1 for the fault tests: routes between the nodes, JetStream
// on each (so R3 streams replicate), a monitoring port per node to see who a client is connected to,
// and kill -9 / restart of one node on its old ports and store.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { EmbeddedNats, freePort } from '../../src/io/nats-server.js';

export interface ClusterNode {
  name: string;
  port: number;
  url: string;
  monitor: number;
  config: string;
  store: string;
  server?: EmbeddedNats;
}

export class NatsCluster {
  private constructor(readonly nodes: ClusterNode[]) {}

  /** Starts `size` nodes routed to each other and waits until JetStream has a meta leader. */
  static async start(dir: string, size = 3): Promise<NatsCluster> {
    // Each port once: ports asked for at the same time can come back equal (a node then fails to bind its route port).
    const taken = new Set<number>();
    const unique = async (): Promise<number> => {
      for (;;) {
        const p = await freePort();
        if (taken.has(p)) continue;
        taken.add(p);
        return p;
      }
    };
    const ports: Array<{ client: number; route: number; monitor: number }> = [];
    for (let i = 0; i < size; i++) ports.push({ client: await unique(), route: await unique(), monitor: await unique() });
    const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`);
    const nodes = ports.map((p, i): ClusterNode => {
      const name = `n${i + 1}`;
      const config = join(dir, `${name}.conf`);
      writeFileSync(
        config,
        [
          `server_name: ${name}`,
          `http_port: ${p.monitor}`,
          // The node's log beside its store (kept across its restarts), to read after a failure.
          `log_file: "${join(dir, `${name}.log`)}"`,
          `cluster { name: tidemark_test, listen: "127.0.0.1:${p.route}", routes: [${routes.filter((_, j) => j !== i).map((r) => `"${r}"`).join(', ')}] }`,
        ].join('\n') + '\n',
      );
      return { name, port: p.client, url: `nats://127.0.0.1:${p.client}`, monitor: p.monitor, config, store: join(dir, `${name}-store`) };
    });
    const cluster = new NatsCluster(nodes);
    const started = await Promise.allSettled(nodes.map((n) => cluster.startNode(n)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // No node left running behind a cluster that did not start.
      await Promise.all(nodes.map((n) => cluster.kill(n)));
      throw failed.reason;
    }
    await cluster.waitForJetStream();
    return cluster;
  }

  /** The client URLs, comma-separated (as `--nats` takes them). */
  get urls(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  async startNode(n: ClusterNode): Promise<void> {
    n.server = await EmbeddedNats.start(n.store, { port: n.port, config: n.config });
  }

  /** kill -9 of one node. */
  async kill(n: ClusterNode): Promise<void> {
    await n.server?.stop('SIGKILL');
    n.server = undefined;
  }

  /** The node a client named `name` is connected to, from each node's /connz. */
  async nodeOf(clientName: string): Promise<ClusterNode | undefined> {
    for (const n of this.nodes) {
      if (!n.server) continue;
      const r = await fetch(`http://127.0.0.1:${n.monitor}/connz?limit=1024`).catch(() => undefined);
      if (!r?.ok) continue;
      const body = (await r.json()) as { connections?: Array<{ name?: string }> };
      if (body.connections?.some((c) => c.name === clientName)) return n;
    }
    return undefined;
  }

  /** A client connected to every live node. */
  connect(): Promise<NatsConnection> {
    return connect({ servers: this.nodes.filter((n) => n.server).map((n) => n.url), maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  }

  /** Waits until JetStream answers account info (a meta leader is elected). */
  async waitForJetStream(ms = 30_000): Promise<void> {
    const nc = await this.connect();
    try {
      const deadline = Date.now() + ms;
      for (;;) {
        try {
          await (await nc.jetstreamManager({ timeout: 2000 })).getAccountInfo();
          return;
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`JetStream of the cluster did not come up: ${(e as Error).message}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    } finally {
      await nc.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.server?.stop()));
  }
}
