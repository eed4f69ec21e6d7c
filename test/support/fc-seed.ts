/**
 * Replays a fast-check failure: FC_SEED (and FC_PATH, to go straight to the
 * shrunk case) from the failure's report apply to every property of the run
 * (test/README.md, "Replaying a property test").
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED;
if (seed !== undefined && seed !== '') {
  if (!/^-?\d+$/.test(seed)) throw new Error(`FC_SEED must be an integer, not ${JSON.stringify(seed)}`);
  const path = process.env.FC_PATH;
  fc.configureGlobal({ seed: Number(seed), ...(path ? { path, endOnFailure: true } : {}) });
}
