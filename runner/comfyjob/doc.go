// Package comfyjob is the ComfyUI job handler of the serverless worker: a worker.Handler that
// takes runpod-workers/worker-comfyui's job input unchanged, runs the workflow on ComfyUI from
// a runtime root in the store and delivers the outputs. It knows nothing of RunPod's queue
// (runner/worker has the protocol); it returns a worker.Result whose Output is typed.
//
// Words used here:
//
//   - Input: a job's input (Input, ParseInput): version_id, workflow or workflow_url, images
//     and input_images, output_mode, gcs_bucket, gcs_prefix, timeout_s, comfy_org_api_key,
//     result_format. Every field is checked before anything runs; a bad one is an *InputError
//     naming it.
//   - Handler: keeps one ComfyUI warm between jobs, switching to the runtime root a job's
//     version names (building it first with Options.Build) and holding a temporary store root
//     on it while it runs. A crash is restarted for the next job; a root that started before on
//     this worker and no longer does asks RunPod to replace the worker.
//   - Output mode: the name of a sink in runner's registry (runner.LookupSink) that returns
//     (base64) or uploads (gcs, s3); OutputModes lists them. A base64 result whose body would
//     exceed ResponseLimit is uploaded to the first uploading sink configured, else the job
//     fails with the outputs' descriptions.
//   - JobOutput: a successful job's output: "outputs" (every file and text), worker-comfyui's
//     "images" (CompatImage), output_mode, version_id, prompt_id, timings and, for
//     result_format seed, the seed tool's fields (SeedOutput).
//   - Failure: a failed job's output beside the error message: version and prompt, details
//     (worker-comfyui's lines), node_errors, execution_error, log_tail, timings.
//   - Progress: the progress a job reports for each event of the run.
//
// Where things are: Options, Handler, starting and switching ComfyUI in handler.go; one job
// (Handle) and its failures in job.go; output types, modes and delivery in output.go; input in
// input.go; the seed tool's fields in seed.go.
package comfyjob
