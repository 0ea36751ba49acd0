// `tidemark/testing`: run a job definition over records in memory, with the engine's runtime.

export { testJob, TestDriver, type TestOptions, type TestOutput, type TestResult } from './runtime/test-driver.js';
