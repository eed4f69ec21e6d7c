/** What a finished GPU job is charged, by case. */
import { describe, expect, it } from 'vitest';
import { actualUsage, type FinishedFields } from '../src/accounting/actual.ts';

const base: FinishedFields = { finishedOn: '1000000', processedOn: '400000', returnvalue: null, failedReason: null };

describe('actualUsage', () => {
  it.each([
    ['reported gpuHours wins', { ...base, returnvalue: '{"gpuHours":0.5}' }, 2, { actualGpuMs: 1_800_000, kind: 'settle' }],
    ['reported zero is zero', { ...base, returnvalue: '{"gpuHours":0}' }, 1, { actualGpuMs: 0, kind: 'settle' }],
    ['no return value: wall time x gpus', base, 4, { actualGpuMs: 2_400_000, kind: 'settle' }],
    ['returned something else: wall time', { ...base, returnvalue: '"done"' }, 1, { actualGpuMs: 600_000, kind: 'settle' }],
    ['negative gpuHours ignored: wall time', { ...base, returnvalue: '{"gpuHours":-3}' }, 1, { actualGpuMs: 600_000, kind: 'settle' }],
    ['unparseable return value: wall time', { ...base, returnvalue: '{oops' }, 1, { actualGpuMs: 600_000, kind: 'settle' }],
    ['failed after running: the time it ran', { ...base, failedReason: 'CUDA OOM' }, 2, { actualGpuMs: 1_200_000, kind: 'settle' }],
    ['failed before starting: released', { ...base, processedOn: null, failedReason: 'bad image' }, 2, { actualGpuMs: 0, kind: 'release' }],
    ['clock went backwards: released, never negative', { ...base, processedOn: '2000000' }, 1, { actualGpuMs: 0, kind: 'release' }],
  ])('%s', (_name, fields, gpus, expected) => {
    expect(actualUsage(fields, gpus)).toMatchObject(expected);
  });

  it('says why in the note', () => {
    expect(actualUsage({ ...base, failedReason: 'CUDA OOM' }, 1).note).toBe('failed (CUDA OOM); wall time x 1 GPU(s)');
    expect(actualUsage({ ...base, returnvalue: '{"gpuHours":1}' }, 1).note).toBe('reported by the GPU worker');
  });
});
