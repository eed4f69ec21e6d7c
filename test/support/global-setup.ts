import type { TestProject } from 'vitest/node';
import { startInfra } from './infra.ts';

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
  return () => infra.stop();
}
