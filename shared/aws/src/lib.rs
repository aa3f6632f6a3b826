//! AWS adapters behind the engine's ports (S3 object source and quarantine, DynamoDB
//! window store and ledger, SQS dead letters), event decoding, and the ingest service
//! shared by the Lambda functions and the CLI.

pub mod alerts;
pub mod config;
pub mod dashboard;
pub mod dynamo;
pub mod events;
pub mod ingest;
pub mod metrics;
pub mod runner;
pub mod s3;
pub mod sqs;
