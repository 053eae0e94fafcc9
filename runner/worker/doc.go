// Package worker is a RunPod queue-based serverless worker written against the queue protocol
// (RunPod's serverless worker protocol as its Python SDK speaks it; docs/runpod.md), without
// RunPod's Python SDK. It knows nothing of ComfyUI: what runs a job is a Handler, and the
// ComfyUI one is in runner/comfyjob. runner/worker/queuetest is a fake queue for tests.
//
// Words used here:
//
//   - Queue: the RunPod platform side of a serverless endpoint. The worker talks to it through
//     four URL templates: job-take (long poll for work), job-done (results and progress),
//     ping (heartbeat) and job-stop (long poll for cancelled jobs, derived from job-take).
//   - Worker id: RUNPOD_POD_ID, substituted for $RUNPOD_POD_ID in every template and for $ID in
//     the take, stop and ping templates. In the done template $ID is the job id.
//   - Job: one object taken from the queue: an id, the client's input verbatim, and opaque
//     extra fields.
//   - Handler: what runs a job (Handler). The loop (Worker) owns the protocol; a handler only
//     returns a Result or an error and may report progress.
//   - Result: what the handler returns; it becomes the job-done body {"output": ...} or
//     {"error": "...", "output": {...}} (EncodeResult gives it). An error returned by the
//     handler, or a panic, becomes the SDK's exception body: "error" holding a JSON text with
//     error_type, error_message, ... The bodies are typed (doneBody, exceptionReport,
//     progressBody, and the local API's answers); only Result.Output is the handler's own.
//   - Progress: a {"status":"IN_PROGRESS","output":...} POST to the job-done URL, throttled.
//   - Stopped job: a job listed by job-stop. Its context is cancelled with ErrJobStopped and
//     nothing is posted for it.
//   - Local modes: RunTestInput runs one job from a test_input.json-style document;
//     LocalAPI serves /run, /runsync, /status/<id>, /cancel/<id> and /health on a port.
//
// Where things are: the loop, job-take, job-stop, results and progress in worker.go; URL
// templates, headers, retries and body encoding in protocol.go; the local modes in local.go.
package worker
