package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newCompletionCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `completion prints the completion script for your shell. Version ids complete from
--versions-dir.

  bash:  source <(runpod-comfy completion bash)
  zsh:   runpod-comfy completion zsh > "${fpath[1]}/_runpod-comfy"
  fish:  runpod-comfy completion fish > ~/.config/fish/completions/runpod-comfy.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			default:
				return usageError(fmt.Errorf("unknown shell %q: bash, zsh, fish or powershell", args[0]))
			}
		},
	}
}

// completeVersionIDs completes the first n arguments of a command with the version ids of the
// versions directory.
func completeVersionIDs(g *Globals, n int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dir := g.VersionsDir
		if dir == "" {
			dir = "versions"
		}
		ids, err := listVersions(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return nil, cobra.ShellCompDirectiveDefault
		}
		return ids, cobra.ShellCompDirectiveDefault
	}
}
