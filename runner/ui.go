package runner

import (
	"context"
	"fmt"
	"time"
)

// RunUI runs ComfyUI in the foreground for the browser UI: it starts it (Start), calls ready
// with its URL, and waits until ctx ends (Ctrl-C: ComfyUI is stopped gracefully and ctx's
// error returned) or ComfyUI exits by itself (an *ExitedError with its log tail; nil for exit
// status 0).
func RunUI(ctx context.Context, opts StartOptions, ready func(url string)) error {
	p, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(p.URL())
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 3*max(opts.StopTimeout, 10*time.Second))
		defer cancel()
		if err := p.Stop(sctx); err != nil {
			return err
		}
		return ctx.Err()
	case <-p.Exited():
		if err := p.ExitErr(); err != nil {
			return &ExitedError{Err: fmt.Errorf("comfyui exited: %w", err), ExitCode: exitCode(err), Log: p.LogTail(20)}
		}
		return nil
	}
}
