import type { TestProject } from 'vitest/node';
import { keptDatabases, startInfra } from './infra.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    databaseUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const infra = await startInfra();
  process.stdout.write(`test infrastructure: ${infra.how}\n`);
  project.provide('redisUrl', infra.redisUrl);
  project.provide('databaseUrl', infra.databaseUrl);
  return async () => {
    // A failed test keeps its database and keys (env.ts): keep what serves them too.
    const kept = await keptDatabases(infra.databaseUrl).catch(() => []);
    if (kept.length === 0) return infra.stop();
    const dbs = `test database${kept.length > 1 ? 's' : ''} ${kept.join(', ')}`;
    if (infra.leaveRunning) return void process.stdout.write(`kept for inspection: ${dbs}; ${infra.leaveRunning()}\n`);
    process.stdout.write(infra.how === 'testcontainers'
      ? `${dbs} kept by failed tests go with the containers; to inspect them, run against servers of your own (REDIS_URL, DATABASE_URL)\n`
      : `kept for inspection on DATABASE_URL's server: ${dbs} (drop each with DROP DATABASE ... WITH (FORCE))\n`);
    await infra.stop();
  };
}
