"""The service layer both doors call: who the caller is, what each caller kind may do (one rule
table for gRPC and S3), and each error classified once as a `Reason`."""
