package users

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// testPassword is the password of testHash, a bcrypt hash at the lowest
// cost so that tests stay fast.
const testPassword = "correct horse battery staple"

var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// cheapArgon2 hashes quickly, for tests.
var cheapArgon2 = Argon2id{Time: 1, Memory: 1024, Threads: 1}

// gaugeComparer is a password comparer that records how many comparisons
// run at once, each taking a little while.
type gaugeComparer struct {
	now, peak atomic.Int64
}

func (g *gaugeComparer) compare(hashed, plaintext []byte) (bool, error) {
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	g.now.Add(-1)
	return string(plaintext) == "right", nil
}

// TestHashingBound checks that no more than max_concurrent_hashes password
// checks run at once, for known and unknown names alike, so that a flood of
// logins leaves the other CPUs to the proxied traffic.
func TestHashingBound(t *testing.T) {
	for _, bound := range []int{1, 3} {
		g := &gaugeComparer{}
		d, err := New([]User{{Username: "alice", Password: testHash}}, bound, cheapArgon2, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.byKey["alice"].hash.compare = g.compare
		d.storeDecoy = func() (passwordHash, error) { return passwordHash{hash: []byte(testHash), compare: g.compare}, nil }
		for i := range d.decoys {
			d.decoys[i].compare = g.compare
		}
		var wg sync.WaitGroup
		for i := range 24 {
			wg.Go(func() {
				name := "alice"
				if i%2 == 1 {
					name = "nobody"
				}
				if _, _, err := d.Verify(context.Background(), noStoreUsers{}, name, "wrong"); err != nil {
					t.Errorf("verify: %v", err)
				}
			})
		}
		wg.Wait()
		if got := g.peak.Load(); got != int64(bound) {
			t.Errorf("max_concurrent_hashes %d: got %d hashes at once, want %d", bound, got, bound)
		}
	}
}

// TestHashingWaitEndsWithClient checks that a login waiting for a hashing
// slot gives up when its client goes away, rather than queueing forever.
func TestHashingWaitEndsWithClient(t *testing.T) {
	d, err := New([]User{{Username: "alice", Password: testHash}}, 1, cheapArgon2, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.hashing <- struct{}{} // the one slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, ok, err := d.Verify(ctx, noStoreUsers{}, "alice", testPassword); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("verify while every slot is taken: got ok=%v err=%v, want the context's error", ok, err)
	}
}

// noStoreUsers is a store without users, for directory tests.
type noStoreUsers struct{ store.Store }

func (noStoreUsers) User(context.Context, string) (store.User, error) {
	return store.User{}, store.ErrNoUser
}

// TestDecoysFollowStoreUsers: unknown names are compared against a hash
// like the store users' as often as store users are among all users.
func TestDecoysFollowStoreUsers(t *testing.T) {
	d, err := New([]User{{Username: "alice", Password: testHash}}, 1, cheapArgon2, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(storeUsers int) (argon int) {
		d.storeUsers = func() int { return storeUsers }
		for i := range 200 {
			h, err := d.decoyFor("nobody" + strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(string(h.hash), "$argon2id$") {
				argon++
			}
		}
		return argon
	}
	if n := count(0); n != 0 {
		t.Errorf("no store users: %d of 200 unknown names compared against the store users' kind, want 0", n)
	}
	if n := count(3); n < 110 || n > 190 {
		t.Errorf("3 store users and 1 configured: %d of 200 unknown names compared against the store users' kind, want about 150", n)
	}
}

func TestArgon2Params(t *testing.T) {
	p := Argon2id{Time: 2, Memory: 1024, Threads: 1}
	h, err := p.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=2,p=1$") {
		t.Errorf("hash %q: want the PHC form with m=1024,t=2,p=1", h)
	}
	// Ours agrees, and reads a hash in the form Caddy makes.
	for pw, want := range map[string]bool{"correct horse": true, "correct horsE": false, "": false} {
		if ok, err := compareArgon2id([]byte(h), []byte(pw)); err != nil || ok != want {
			t.Errorf("compareArgon2id(%q): got %v, %v; want %v", pw, ok, err, want)
		}
	}
	if ok, err := compareArgon2id(caddyauth.Argon2idHash{}.FakeHash(), []byte("correct horse")); ok || err != nil {
		t.Errorf("compareArgon2id(Caddy's fake hash): got %v, %v; want false, nil", ok, err)
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horsE": false, "": false} {
		if ok, err := (caddyauth.Argon2idHash{}).Compare([]byte(h), []byte(pw)); err != nil || ok != want {
			t.Errorf("Compare(%q): got %v, %v; want %v", pw, ok, err, want)
		}
	}
	if h2, _ := p.Hash("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for stored, want := range map[string]bool{
		h: true,
		strings.Replace(h, "m=1024", "m=2048", 1): false,
		strings.Replace(h, "t=2", "t=1", 1):       false,
		testHash:                                  false, // bcrypt
		"$argon2id$v=19$m=1024,t=2,p=1$bad":       false,
	} {
		if got := p.Current(stored); got != want {
			t.Errorf("current(%.40s): got %v, want %v", stored, got, want)
		}
	}
}

func TestCheckNewPassword(t *testing.T) {
	for pw, want := range map[string]error{
		"1234567":                          ErrPasswordShort,
		"12345678":                         nil,
		"ÄÖÜäöüßé":                         nil, // 8 characters, 16 bytes
		"ÄÖÜäöüß":                          ErrPasswordShort,
		strings.Repeat("x", 1024):          nil,
		strings.Repeat("x", 1025):          ErrPasswordLong,
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8": ErrPasswordUTF8,
	} {
		if got := CheckNewPassword(pw); got != want {
			t.Errorf("CheckNewPassword(%.12q): got %v, want %v", pw, got, want)
		}
	}
}

// TestDecoyWithoutConfiguredUsers: with no user in the config, an unknown
// name is checked against an argon2id hash with the configured parameters,
// the kind of hash every store user ends up with.
func TestDecoyWithoutConfiguredUsers(t *testing.T) {
	d, err := New(nil, 1, Argon2id{Time: 2, Memory: 1024, Threads: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := d.decoyFor("nobody"); err != nil || !strings.HasPrefix(string(h.hash), "$argon2id$v=19$m=1024,t=2,p=1$") {
		t.Errorf("decoy %.32s (%v): want argon2id with the configured parameters", h.hash, err)
	}
}

// TestMalformedArgon2id: a configured hash that is not well-formed argon2id,
// or asks for absurd work, is refused when the config loads.
func TestMalformedArgon2id(t *testing.T) {
	good, _ := cheapArgon2.Hash("pw")
	for _, h := range []string{
		"$argon2id$v=19$m=1024,t=1,p=1$bad",
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=1024", "m=99999999", 1),
		strings.Replace(good, "t=1", "t=0", 1),
		strings.Replace(good, "p=1", "p=0", 1),
		good + "$",
	} {
		if err := CheckHash(h); err == nil {
			t.Errorf("CheckHash(%q) accepted it", h)
		}
	}
	if err := CheckHash(good); err != nil {
		t.Errorf("CheckHash(good): %v", err)
	}
}

// countingComparer records which hash each comparison used.
type countingComparer struct {
	inner func(hashed, plaintext []byte) (bool, error)
	used  *[]string
}

func (c countingComparer) compare(hashed, plaintext []byte) (bool, error) {
	*c.used = append(*c.used, string(hashed))
	return c.inner(hashed, plaintext)
}

// TestUnknownNamesHashLikeKnownOnes: a login with an unknown name does
// exactly the hash work of a login of some configured user, chosen by the
// name, the same every time, and spread over all the users, so that with
// users of different hash kinds or costs no timing class belongs to known
// names alone.
func TestUnknownNamesHashLikeKnownOnes(t *testing.T) {
	bcrypt4 := testHash
	// A cheap argon2id hash (1 MiB) in the format caddy hash-password prints.
	salt := []byte("0123456789abcdef")
	argon := "$argon2id$v=19$m=1024,t=1,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte(testPassword), salt, 1, 1024, 1, 32))
	d, err := New([]User{{Username: "alice", Password: bcrypt4}, {Username: "bob", Password: argon}, {Username: "carol", Password: bcrypt4}}, 2, cheapArgon2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, a := range d.byKey {
		a.hash.compare = countingComparer{inner: a.hash.compare, used: &used}.compare
	}
	for i := range d.decoys {
		d.decoys[i].compare = countingComparer{inner: d.decoys[i].compare, used: &used}.compare
	}
	kinds := map[string]int{}
	for i := range 48 {
		name := "nobody" + strconv.Itoa(i)
		var first string
		for try := range 2 {
			used = used[:0]
			if _, ok, _ := d.Verify(context.Background(), noStoreUsers{}, name, "guess"); ok {
				t.Fatalf("unknown name %s verified", name)
			}
			if len(used) != 1 {
				t.Fatalf("unknown name %s: %d hash comparisons, want 1", name, len(used))
			}
			if used[0] != bcrypt4 && used[0] != argon {
				t.Fatalf("unknown name %s compared against %q, not a configured hash", name, used[0])
			}
			if try == 0 {
				first = used[0]
			} else if used[0] != first {
				t.Fatalf("unknown name %s compared against different hashes on different tries", name)
			}
		}
		kinds[first[:4]]++
	}
	if len(kinds) != 2 {
		t.Errorf("48 unknown names used the hash kinds %v, want both bcrypt and argon2id", kinds)
	}
	// Known names compare against their own hash, once.
	used = used[:0]
	if _, ok, _ := d.Verify(context.Background(), noStoreUsers{}, "bob", "guess"); ok || len(used) != 1 || used[0] != argon {
		t.Errorf("bob: compared %d times against %v, want once against his own hash", len(used), used)
	}
}
