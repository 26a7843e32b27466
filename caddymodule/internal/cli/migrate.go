package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// migrateCommand is `caddy two-factor migrate --from <store> --to <store>`.
func migrateCommand(env Env) *cobra.Command {
	cmd := leaf("migrate", "Copies a store into another, badger or PostgreSQL", `
Copies everything a backup holds from one store into another, empty one:
the users kept in the store, every second factor (its TOTP secret, still
encrypted, the last code step used, the unused backup codes) and the
store's meta values, among them the check of its encryption key. So the
instances using the new store need the same encryption key as the old.

Stores are badger:<dir> (a storage_dir) or postgres:<connection string>.
A badger store must not be in use: stop the Caddy that has it open. The
sessions, the remembered browsers and the recent activity are not
copied: users log in again after the move. The target must hold no users
and no second factors; it is written in one go, or not at all.

Example: caddy two-factor migrate --from badger:/var/lib/caddy/two_factor \
  --to "postgres://caddy:secret@db.internal/caddy?sslmode=verify-full"`, cobra.NoArgs, env, cliMigrate)
	cmd.Flags().String("from", "", "The store to copy: badger:<dir> or postgres:<connection string>")
	cmd.Flags().String("to", "", "The empty store to copy into: badger:<dir> or postgres:<connection string>")
	return cmd
}

func cliMigrate(c *cli) error {
	from, to := c.flag("from"), c.flag("to")
	if from == "" || to == "" {
		return errors.New("give both --from and --to (badger:<dir> or postgres:<connection string>)")
	}
	for _, s := range []struct{ flag, spec string }{{"--from", from}, {"--to", to}} {
		if _, _, err := parseStorage(s.spec); err != nil {
			return fmt.Errorf("%s: %w", s.flag, err)
		}
	}
	if from == to {
		return errors.New("--from and --to are the same store")
	}
	src, err := c.openStore(from, false, addrNone)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := c.openStore(to, true, addrNone)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()

	ctx := context.Background()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(src.Backup(ctx, pw)) }()
	counted := &progress{r: pr, out: c.errOut, every: time.Second}
	snap, err := dst.Restore(ctx, counted, func(s store.Snapshot) error {
		fmt.Fprintf(c.errOut, "read %s: %s and %s; writing\n", byteCount(counted.n),
			countNoun(s.Users, "store user", "store users"), countNoun(s.Accounts, "second factor", "second factors"))
		return nil
	})
	if err != nil {
		pr.CloseWithError(err)
		if errors.Is(err, store.ErrNotEmpty) {
			return fmt.Errorf("--to: %w; nothing was written", err)
		}
		return fmt.Errorf("migrating: %w; nothing was written", err)
	}
	fmt.Fprintf(c.out, "Copied %s and %s into the new store. Give its instances the same encryption key; sessions were not copied, so users log in again.\n",
		countNoun(snap.Users, "store user", "store users"), countNoun(snap.Accounts, "second factor", "second factors"))
	return nil
}

// progress counts what is read through it and says so every so often, for
// a large store.
type progress struct {
	r     io.Reader
	out   io.Writer
	n     int64
	every time.Duration
	last  time.Time
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every {
		if !p.last.IsZero() {
			fmt.Fprintf(p.out, "read %s\n", byteCount(p.n))
		}
		p.last = now
	}
	return n, err
}

// byteCount writes a size for people.
func byteCount(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
