package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestDatabases: each URL is a database of its own on one running cluster.
func TestDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	for _, u := range []string{a, b} {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: got %d tables, %v; want a new, empty database", u, n, err)
		}
		conn.Close(ctx)
	}
}

// TestReapOrphans: the folder of a cluster whose test binary is gone is
// removed by the next start; one whose owner lives is left alone.
func TestReapOrphans(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	alive, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(alive)
	for dir, pid := range map[string]int{orphan: dead.Process.Pid, alive: os.Getpid()} {
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reap(Shared(t).Bin)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphan's folder is still there: %v", err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("a live owner's folder went: %v", err)
	}
}
