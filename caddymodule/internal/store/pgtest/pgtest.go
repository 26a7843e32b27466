// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb in
// a temporary folder, as a non-root user, and a server on a free loopback
// port, removed when the tests end. Each caller gets a database of its own
// on the one cluster of the test binary.
//
// A package whose tests use it runs them through Main:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Without PostgreSQL's programs on the machine the tests that need it are
// skipped, except when CI is set: there they fail, as CI installs
// Debian's postgresql package (.ci/run).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	// Dir is its data folder; Bin the folder of PostgreSQL's programs.
	Dir, Bin string
	// Port is its TCP port on 127.0.0.1.
	Port int
	// asUser runs the server's programs as this user when the tests run as
	// root (initdb refuses root).
	asUser *user.User
	dbs    atomic.Int64
}

var (
	once    sync.Once
	shared  *Cluster
	errOnce error
)

// Main runs the tests and stops the cluster if one was started.
func Main(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// StopShared stops the test binary's cluster if one was started: for a
// TestMain that does more than Main.
func StopShared() {
	if shared != nil {
		shared.Stop()
		shared = nil
	}
}

// URL returns the connection string of a new, empty database on the test
// binary's cluster, starting the cluster on first use.
func URL(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return c.URL(name)
}

// Shared returns the test binary's cluster, starting it on first use.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	once.Do(func() { shared, errOnce = Start() })
	if errors.Is(errOnce, errNoPostgres) {
		if os.Getenv("CI") != "" {
			tb.Fatalf("pgtest: %v (CI must install the postgresql package)", errOnce)
		}
		tb.Skipf("pgtest: %v", errOnce)
	}
	if errOnce != nil {
		tb.Fatalf("pgtest: %v", errOnce)
	}
	return shared
}

// URL is the connection string of the database name on the cluster.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://tf@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

var errNoPostgres = errors.New("PostgreSQL's initdb and pg_ctl were not found")

// binDir finds PostgreSQL's programs: pg_config's answer, else Debian's
// versioned folders (newest first), else the PATH.
func binDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errNoPostgres
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start creates and starts a new cluster. The caller stops it.
func Start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the server as the
		// postgres user Debian's package creates, else nobody.
		for _, name := range []string{"postgres", "nobody"} {
			if u, err := user.Lookup(name); err == nil {
				c.asUser = u
				break
			}
		}
		if c.asUser == nil {
			return nil, errors.New("running as root and no postgres or nobody user to run PostgreSQL as")
		}
	}
	reap(bin)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	// Who started it: a test binary that dies without cleaning up (a
	// panic, a kill) leaves its cluster to the next one to stop.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if c.asUser != nil {
		uid, _ := strconv.Atoi(c.asUser.Uid)
		gid, _ := strconv.Atoi(c.asUser.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "tf", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	// A free port: a race with other programs is possible but harmless
	// here (the start fails and says so).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", c.Port, dir)
	if out, err := c.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return c, nil
}

// Stop stops the server at once and removes its folder.
func (c *Cluster) Stop() {
	_, _ = c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.Dir)
}

// StopServer stops the server (fast: clients are disconnected), keeping
// its data, for tests of a database that goes away: StartServer brings it
// back on the same port.
func (c *Cluster) StopServer() error {
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// StartServer starts a server stopped by StopServer.
func (c *Cluster) StartServer() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", c.Port, c.Dir)
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-o", opts, "-l", filepath.Join(c.Dir, "log"), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// run runs one of PostgreSQL's programs, as the unprivileged user when
// the tests run as root.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.Bin, prog), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.asUser != nil {
		uid, _ := strconv.Atoi(c.asUser.Uid)
		gid, _ := strconv.Atoi(c.asUser.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = c.Dir
		if cmd.Dir == "" {
			cmd.Dir = "/"
		}
	}
	return cmd.CombinedOutput()
}

// reap stops and removes the clusters of test binaries that are gone
// (their owner's process no longer exists).
func reap(bin string) {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*", "owner"))
	for _, f := range owners {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // alive (or not ours to judge)
		}
		dir := filepath.Dir(f)
		c := &Cluster{Dir: dir, Bin: bin}
		if os.Geteuid() == 0 {
			if u, err := user.Lookup("postgres"); err == nil {
				c.asUser = u
			}
		}
		c.Stop()
	}
}
