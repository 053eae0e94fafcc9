// Command runpod-comfy builds ComfyUI environments into a content-addressed store on a RunPod
// network volume and runs them. See README.md.
package main

import (
	"os"

	"github.com/runpod-comfy/runpod-comfy/cmd/runpod-comfy/cli"
)

func main() {
	os.Exit(cli.Main())
}
