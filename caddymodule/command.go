package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/cli"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "two-factor",
		Usage: "<command> [--address <interface>] [--storage-dir <path>]",
		Short: "Manages the users, second factors and store of the two_factor handler",
		Long: `
Manages what the two_factor handler keeps in its store: users (beside those
in the config), each user's second factor, sessions and throttling, and
backups of the whole store.

While Caddy runs, its store is locked, so the commands go through Caddy's
admin API (the same address as caddy reload uses: --address, else the
admin address in --config, else localhost:2019). When no Caddy answers
there, or none of its handlers uses the --storage-dir given (a restore
into a new folder), the command works on that store folder directly.

If the running Caddy has several two_factor stores open, choose one with
--storage-dir; if the store serves several realms, choose one with
--realm.

Passwords are read from the terminal, twice, or from standard input (one
line) when it is not a terminal. Nothing these commands print holds a
secret: no password, code, TOTP key or session ID.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cli.Build(cmd, cli.Env{
				AdminAddress: func(address, config, adapter string) (string, error) {
					return caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
				},
				AdminEndpoint: adminEndpoint,
				Log:           func(msg string) { caddy.Log().Named("two-factor").Error(msg) },
				ExitCode:      caddy.ExitCodeFailedStartup,
			})
		},
	})
}

// adminEndpoint reads an admin address as Caddy does: a TCP address, or a
// unix socket or file descriptor (which take no Origin header).
func adminEndpoint(addr string) (network, address string, socket bool, err error) {
	pa, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return "", "", false, err
	}
	if pa.PortRangeSize() > 1 {
		return "", "", false, fmt.Errorf("a port range")
	}
	return pa.Network, pa.JoinHostPort(0), pa.IsUnixNetwork() || pa.IsFdNetwork(), nil
}
