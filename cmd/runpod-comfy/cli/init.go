package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// InitOptions are the flags of init.
type InitOptions struct {
	Python string // the interpreter to check; $COMFY_PYTHON, else python3
}

func newInitCmd(g *Globals) *cobra.Command {
	o := &InitOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the ROOT layout and check that git, python3, venv and pip are installed",
		Long: `init creates ROOT (see --root): store/ with .meta, .locks, .roots, .trash and .tmp,
builds/.generations, state/ and cache/runpod-comfy/{resolved,git,pip}. It is safe to run again.
Then it checks the tools builds need (git, python3, the venv module with ensurepip, and pip)
and prints one table of what is present and what is missing, with how to install it. Exit
code 1 when something required is missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Python == "" {
				o.Python = os.Getenv("COMFY_PYTHON")
			}
			if o.Python == "" {
				o.Python = "python3"
			}
			return runInit(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.Python, "python", "", "Python interpreter to check (default $COMFY_PYTHON, else python3)")
	return cmd
}

// toolCheck is one row of init's table.
type toolCheck struct {
	Tool     string `json:"tool"`
	Required bool   `json:"required"`
	Present  bool   `json:"present"`
	Detail   string `json:"detail"`
	Install  string `json:"install,omitempty"`
}

func runInit(ctx context.Context, g *Globals, o *InitOptions, out io.Writer) error {
	if err := initRoot(g.Root); err != nil {
		return err
	}
	checks := checkTools(ctx, o.Python)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	missing := 0
	for _, c := range checks {
		if c.Required && !c.Present {
			missing++
		}
	}
	if g.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Root  string      `json:"root"`
			Tools []toolCheck `json:"tools"`
			OK    bool        `json:"ok"`
		}{g.Root, checks, missing == 0}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "ROOT %s is ready (store/, builds/, state/, cache/runpod-comfy/)\n\n", g.Root)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOOL\tSTATUS\tDETAIL\tHOW TO INSTALL")
		for _, c := range checks {
			status := "ok"
			if !c.Present {
				status = "MISSING"
			}
			install := "-"
			if !c.Present {
				install = c.Install
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Tool, status, c.Detail, install)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if missing > 0 {
		if !g.JSON {
			fmt.Fprintf(out, "\n%d required tool(s) missing: install them and run init again.\n", missing)
		}
		return silentExit(ExitFailure)
	}
	return nil
}

// initRoot creates the ROOT layout of docs/design.md section 3. The store package owns store/ and
// builds/; the rest is created here.
func initRoot(root string) error {
	if _, err := store.Open(root); err != nil {
		return fmt.Errorf("creating ROOT: %w", err)
	}
	l := layout.New(root)
	for _, d := range []string{l.StateBase(), l.Resolved(), l.Git(), l.Pip()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating ROOT: %w", err)
		}
	}
	return nil
}

// checkTools runs each tool once to see whether it is there and works.
func checkTools(ctx context.Context, python string) []toolCheck {
	run := func(name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	firstLine := func(s string) string {
		s, _, _ = strings.Cut(s, "\n")
		return s
	}
	var checks []toolCheck

	git := toolCheck{Tool: "git", Required: true, Install: "apt-get install git (Debian/Ubuntu), brew install git (macOS)"}
	if out, err := run("git", "--version"); err == nil {
		git.Present, git.Detail = true, firstLine(out)
	} else {
		git.Detail = "not found on PATH"
	}
	checks = append(checks, git)

	py := toolCheck{Tool: "python3", Required: true, Install: "apt-get install python3 (Debian/Ubuntu), brew install python (macOS)"}
	pyOK := false
	if out, err := run(python, "-c", "import sys; print('Python %d.%d.%d' % sys.version_info[:3], sys.executable)"); err == nil {
		py.Present, py.Detail, pyOK = true, firstLine(out), true
	} else if _, lerr := exec.LookPath(python); lerr != nil {
		py.Detail = python + " not found on PATH"
	} else {
		py.Detail = python + " does not run: " + firstLine(out)
	}
	checks = append(checks, py)

	venv := toolCheck{Tool: "venv", Required: true, Install: "apt-get install python3-venv (Debian/Ubuntu); included with python.org and Homebrew Python"}
	pip := toolCheck{Tool: "pip", Required: true, Install: "apt-get install python3-pip (Debian/Ubuntu), or " + python + " -m ensurepip --user"}
	if !pyOK {
		venv.Detail, pip.Detail = "needs python3", "needs python3"
	} else {
		if out, err := run(python, "-c", "import venv, ensurepip; print('venv and ensurepip importable')"); err == nil {
			venv.Present, venv.Detail = true, firstLine(out)
		} else {
			venv.Detail = "venv or ensurepip missing: " + lastLine(out)
		}
		if out, err := run(python, "-m", "pip", "--version"); err == nil {
			pip.Present, pip.Detail = true, firstLine(out)
		} else {
			pip.Detail = "pip missing: " + lastLine(out)
		}
	}
	return append(checks, venv, pip)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
