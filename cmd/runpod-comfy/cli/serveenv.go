package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// workerComfyUISettings are worker-comfyui's environment variables as serve honours them.
type workerComfyUISettings struct {
	// RefreshWorker (REFRESH_WORKER=true): RunPod replaces the worker after every job.
	RefreshWorker bool
	// LogLevel (COMFY_LOG_LEVEL): ComfyUI's --verbose level; empty keeps ComfyUI's default.
	LogLevel string
	// Unreachable (WEBSOCKET_RECONNECT_ATTEMPTS x WEBSOCKET_RECONNECT_DELAY_S): how long
	// ComfyUI may stop answering during a job; 0 keeps the worker's default.
	Unreachable time.Duration
	// TraceWebSocket (WEBSOCKET_TRACE=true): every WebSocket frame is logged.
	TraceWebSocket bool
}

// comfyLogLevels are the levels ComfyUI's --verbose takes.
var comfyLogLevels = []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

// readWorkerComfyUISettings reads worker-comfyui's settings. A value serve cannot use is an
// error naming the variable; a setting with no equivalent here is refused with the one to
// use instead (usingAPIPort: serve already runs its local API).
func readWorkerComfyUISettings(usingAPIPort bool) (workerComfyUISettings, error) {
	var s workerComfyUISettings
	var err error
	if s.RefreshWorker, err = envBool("REFRESH_WORKER"); err != nil {
		return s, err
	}
	if s.TraceWebSocket, err = envBool("WEBSOCKET_TRACE"); err != nil {
		return s, err
	}
	if v := strings.TrimSpace(os.Getenv("COMFY_LOG_LEVEL")); v != "" {
		up := strings.ToUpper(v)
		ok := false
		for _, l := range comfyLogLevels {
			ok = ok || l == up
		}
		if !ok {
			return s, fmt.Errorf("COMFY_LOG_LEVEL=%q: want one of %s", v, strings.Join(comfyLogLevels, ", "))
		}
		s.LogLevel = up
	}
	attempts, delay := 5, 3 // worker-comfyui's defaults
	set := false
	for name, dst := range map[string]*int{"WEBSOCKET_RECONNECT_ATTEMPTS": &attempts, "WEBSOCKET_RECONNECT_DELAY_S": &delay} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 3600 {
				return s, fmt.Errorf("%s=%q: want a whole number from 0 to 3600", name, v)
			}
			*dst, set = n, true
		}
	}
	if set {
		s.Unreachable = time.Duration(attempts) * time.Duration(delay) * time.Second
		if s.Unreachable == 0 {
			s.Unreachable = time.Second // no retry: fail at the first lost contact
		}
	}
	if on, err := envBool("SERVE_API_LOCALLY"); err != nil {
		return s, err
	} else if on && !usingAPIPort {
		return s, fmt.Errorf("SERVE_API_LOCALLY is worker-comfyui's switch for its local API: use `runpod-comfy serve --api-port 8000 --api-host 0.0.0.0` instead")
	}
	return s, nil
}

// envBool reads a worker-comfyui style boolean: "true"/"false" in any case, or 1/0; empty
// is false.
func envBool(name string) (bool, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}
