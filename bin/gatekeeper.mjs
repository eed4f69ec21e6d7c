#!/usr/bin/env node
// The `gatekeeper` CLI: loads the TypeScript source through tsx.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
process.exit(await runCli(process.argv.slice(2)));
