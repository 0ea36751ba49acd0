// `tidemark` as a library: write a job (event time, keys, aggregate) and run it, embedded or
// with `tidemark run --job-module`.

export { defineJob, RejectRecord, type JobDefinition, type AggregateFunctions, type EventTime } from './runtime/job-definition.js';
export { startJob, type StartOptions, type JobHandle } from './host/start-job.js';
export { sentimentJob, type SentimentAcc, type SentimentResult } from './runtime/sentiment-job.js';
export type { ResultRecord, LateRecord, DeadLetterRecord } from './runtime/records.js';
export type { WindowView } from './runtime/window-operator.js';
export { TidemarkError, type ErrorCode } from './errors.js';
