package cli

import (
	"testing"
	"time"
)

func TestReadWorkerComfyUISettings(t *testing.T) {
	t.Setenv("REFRESH_WORKER", "TRUE")
	t.Setenv("COMFY_LOG_LEVEL", "warning")
	t.Setenv("WEBSOCKET_RECONNECT_ATTEMPTS", "4")
	t.Setenv("WEBSOCKET_RECONNECT_DELAY_S", "")
	t.Setenv("WEBSOCKET_TRACE", "true")
	t.Setenv("SERVE_API_LOCALLY", "true")
	s, err := readWorkerComfyUISettings(true) // with --api-port, SERVE_API_LOCALLY is what it asks for
	if err != nil {
		t.Fatal(err)
	}
	want := workerComfyUISettings{RefreshWorker: true, LogLevel: "WARNING", Unreachable: 12 * time.Second, TraceWebSocket: true}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	t.Setenv("WEBSOCKET_RECONNECT_ATTEMPTS", "0")
	if s, _ := readWorkerComfyUISettings(true); s.Unreachable != time.Second {
		t.Errorf("0 attempts: %s, want 1s (fail at the first lost contact)", s.Unreachable)
	}
	for _, k := range []string{"REFRESH_WORKER", "COMFY_LOG_LEVEL", "WEBSOCKET_RECONNECT_ATTEMPTS", "WEBSOCKET_TRACE", "SERVE_API_LOCALLY"} {
		t.Setenv(k, "")
	}
	if s, err := readWorkerComfyUISettings(false); err != nil || s != (workerComfyUISettings{}) {
		t.Errorf("unset: %+v, %v; want the zero settings", s, err)
	}
}
