package otp

import (
	"bytes"
	"errors"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"

	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// RFC 6238 appendix B seeds: the ASCII digits "1234567890" repeated to the
// hash's output length.
var (
	seedSHA1   = []byte("12345678901234567890")
	seedSHA256 = []byte("12345678901234567890123456789012")
	seedSHA512 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

func TestRFC6238Vectors(t *testing.T) {
	tests := []struct {
		unix int64
		alg  string
		code string
	}{
		{59, SHA1, "94287082"},
		{59, SHA256, "46119246"},
		{59, SHA512, "90693936"},
		{1111111109, SHA1, "07081804"},
		{1111111109, SHA256, "68084774"},
		{1111111109, SHA512, "25091201"},
		{1111111111, SHA1, "14050471"},
		{1111111111, SHA256, "67062674"},
		{1111111111, SHA512, "99943326"},
		{1234567890, SHA1, "89005924"},
		{1234567890, SHA256, "91819424"},
		{1234567890, SHA512, "93441116"},
		{2000000000, SHA1, "69279037"},
		{2000000000, SHA256, "90698825"},
		{2000000000, SHA512, "38618901"},
		{20000000000, SHA1, "65353130"},
		{20000000000, SHA256, "77737706"},
		{20000000000, SHA512, "47863826"},
	}
	seeds := map[string][]byte{SHA1: seedSHA1, SHA256: seedSHA256, SHA512: seedSHA512}
	for _, tt := range tests {
		t.Run(tt.alg+"/"+tt.code, func(t *testing.T) {
			p := Params{Algorithm: tt.alg, Digits: 8, Period: 30}
			now := time.Unix(tt.unix, 0)
			step, ok := Match(seeds[tt.alg], p, tt.code, now, 0)
			if !ok {
				t.Fatalf("Match(%q at %d) = no match, want match", tt.code, tt.unix)
			}
			if want := tt.unix / 30; step != want {
				t.Errorf("got step %d, want %d", step, want)
			}
			wrong := tt.code[:7] + string('0'+(tt.code[7]-'0'+1)%10)
			if _, ok := Match(seeds[tt.alg], p, wrong, now, 0); ok {
				t.Errorf("Match(%q) = match, want no match", wrong)
			}
		})
	}
}

// codeAt computes the code for a step through pquerna's TOTP entry point,
// independently of the HOTP path Match uses.
func codeAt(t *testing.T, secret []byte, p Params, step int64) string {
	t.Helper()
	alg, err := p.algorithm()
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCodeCustom(EncodeSecret(secret), time.Unix(step*int64(p.Period), 0), totp.ValidateOpts{
		Period:    uint(p.Period),
		Skew:      0,
		Digits:    pqotp.Digits(p.Digits),
		Algorithm: alg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

var testSecret = []byte("0123456789abcdefghij")

func TestMatchSkewWindow(t *testing.T) {
	now := time.Unix(1_700_000_013, 0)
	current := Step(now, Default.Period)
	tests := []struct {
		offset int64
		skew   int
		wantOK bool
	}{
		{0, 0, true},
		{-1, 0, false},
		{1, 0, false},
		{-1, 1, true},
		{1, 1, true},
		{-2, 1, false},
		{2, 1, false},
		{-2, 2, true},
		{2, 2, true},
		{-3, 2, false},
		{10, MaxSkew, true},
		{0, -1, false},
		{0, MaxSkew + 1, false},
	}
	for _, tt := range tests {
		code := codeAt(t, testSecret, Default, current+tt.offset)
		step, ok := Match(testSecret, Default, code, now, tt.skew)
		if ok != tt.wantOK {
			t.Errorf("offset %d skew %d: got ok=%v, want %v", tt.offset, tt.skew, ok, tt.wantOK)
			continue
		}
		if ok && step != current+tt.offset {
			t.Errorf("offset %d skew %d: got step %d, want %d", tt.offset, tt.skew, step, current+tt.offset)
		}
	}
}

func TestMatchAfter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	current := Step(now, Default.Period)
	prev := codeAt(t, testSecret, Default, current-1)
	tests := []struct {
		name   string
		code   string
		after  int64
		wantOK bool
	}{
		{"nothing used", prev, math.MinInt64, true},
		{"older step used", prev, current - 2, true},
		{"same step used", prev, current - 1, false},
		{"newer step used", prev, current, false},
		{"future step used", prev, current + 5, false},
	}
	for _, tt := range tests {
		step, ok := MatchAfter(testSecret, Default, tt.code, now, 1, tt.after)
		if ok != tt.wantOK {
			t.Errorf("%s: got ok=%v, want %v", tt.name, ok, tt.wantOK)
		}
		if ok && step != current-1 {
			t.Errorf("%s: got step %d, want %d", tt.name, step, current-1)
		}
	}
}

// collisionSecret's SHA1/6-digit/30s codes for steps 56713441 and 56713442
// are both "055735" (found by an offline search).
var collisionSecret = []byte("collision-test-secre")

func TestMatchAfterCollision(t *testing.T) {
	const first, second = 56713441, 56713442
	now := time.Unix(second*30, 0)
	for _, s := range []int64{first, second} {
		if got := codeAt(t, collisionSecret, Default, s); got != "055735" {
			t.Fatalf("step %d: got code %q, want %q", s, got, "055735")
		}
	}
	tests := []struct {
		after    int64
		wantStep int64
		wantOK   bool
	}{
		{math.MinInt64, first, true},
		{first, second, true},
		{second, 0, false},
	}
	for _, tt := range tests {
		step, ok := MatchAfter(collisionSecret, Default, "055735", now, 1, tt.after)
		if ok != tt.wantOK || step != tt.wantStep {
			t.Errorf("after %d: got (%d, %v), want (%d, %v)", tt.after, step, ok, tt.wantStep, tt.wantOK)
		}
	}
}

func TestMatchMalformed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	valid := codeAt(t, testSecret, Default, Step(now, Default.Period))
	tests := []struct {
		name   string
		code   string
		wantOK bool
	}{
		{"valid", valid, true},
		{"surrounding spaces", "  " + valid + "\t\n", true},
		{"empty", "", false},
		{"spaces only", "      ", false},
		{"five digits", valid[:5], false},
		{"seven digits", valid + "0", false},
		{"letter", valid[:2] + "a" + valid[3:], false},
		{"inner space", valid[:3] + " " + valid[3:], false},
		{"sign", "+" + valid[1:], false},
		{"arabic-indic digits", "١٢٣٤٥٦", false},
		{"fullwidth digits", "１２３４５６", false},
		{"NUL bytes", "\x00\x00\x00\x00\x00\x00", false},
		{"invalid UTF-8", "\xff\xfe\xfd\xfc\xfb\xfa", false},
		{"very long", strings.Repeat(valid, 1<<16), false},
		{"very long spaces", valid + strings.Repeat(" ", 1<<16), false},
	}
	for _, tt := range tests {
		if _, ok := Match(testSecret, Default, tt.code, now, 1); ok != tt.wantOK {
			t.Errorf("%s: got ok=%v, want %v", tt.name, ok, tt.wantOK)
		}
	}
}

func TestMatchRefusesBadInputs(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	valid := codeAt(t, testSecret, Default, Step(now, Default.Period))
	tests := []struct {
		name   string
		secret []byte
		p      Params
	}{
		{"nil secret", nil, Default},
		{"short secret", testSecret[:MinSecretSize-1], Default},
		{"bad algorithm", testSecret, Params{Algorithm: "MD5", Digits: 6, Period: 30}},
		{"bad digits", testSecret, Params{Algorithm: SHA1, Digits: 7, Period: 30}},
		{"zero period", testSecret, Params{Algorithm: SHA1, Digits: 6, Period: 0}},
		{"zero params", testSecret, Params{}},
	}
	for _, tt := range tests {
		if _, ok := Match(tt.secret, tt.p, valid, now, 1); ok {
			t.Errorf("%s: got match, want none", tt.name)
		}
	}
}

func TestMatchBefore1970(t *testing.T) {
	// The window around step 0 reaches step -1, which has no code.
	now := time.Unix(5, 0)
	code := codeAt(t, testSecret, Default, 0)
	step, ok := Match(testSecret, Default, code, now, 1)
	if !ok || step != 0 {
		t.Errorf("got (%d, %v), want (0, true)", step, ok)
	}
	if _, ok := Match(testSecret, Default, code, time.Unix(-3600, 0), MaxSkew); ok {
		t.Errorf("got match before 1970, want none")
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix   int64
		period int
		want   int64
	}{
		{0, 30, 0},
		{29, 30, 0},
		{30, 30, 1},
		{59, 30, 1},
		{1111111109, 30, 37037036},
		{20000000000, 30, 666666666},
		{59, 60, 0},
		{-1, 30, -1},
		{-30, 30, -1},
		{-31, 30, -2},
	}
	for _, tt := range tests {
		if got := Step(time.Unix(tt.unix, 0), tt.period); got != tt.want {
			t.Errorf("Step(%d, %d): got %d, want %d", tt.unix, tt.period, got, tt.want)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		p       Params
		wantErr bool
	}{
		{Default, false},
		{Params{SHA256, 8, 30}, false},
		{Params{SHA512, 6, 60}, false},
		{Params{SHA1, 6, MinPeriod}, false},
		{Params{SHA1, 6, MaxPeriod}, false},
		{Params{"sha1", 6, 30}, true},
		{Params{"MD5", 6, 30}, true},
		{Params{"", 6, 30}, true},
		{Params{SHA1, 7, 30}, true},
		{Params{SHA1, 0, 30}, true},
		{Params{SHA1, 6, 0}, true},
		{Params{SHA1, 6, -30}, true},
		{Params{SHA1, 6, MinPeriod - 1}, true},
		{Params{SHA1, 6, MaxPeriod + 1}, true},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("%+v: got error %v, want error: %v", tt.p, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%+v: got error %v, want it to wrap ErrInvalidParams", tt.p, err)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != SecretSize {
		t.Errorf("got %d bytes, want %d", len(a), SecretSize)
	}
	if bytes.Equal(a, b) {
		t.Errorf("got two equal secrets %x, want different ones", a)
	}
}

func TestEncodeSecret(t *testing.T) {
	tests := []struct {
		secret []byte
		want   string
	}{
		{seedSHA1, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
		{[]byte("f"), "MY"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := EncodeSecret(tt.secret); got != tt.want {
			t.Errorf("EncodeSecret(%q): got %q, want %q", tt.secret, got, tt.want)
		}
	}
}

func TestGroupKey(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"ABC", "ABC"},
		{"ABCD", "ABCD"},
		{"ABCDE", "ABCD E"},
		{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"},
		{"AB CD EF", "ABCD EF"},
	}
	for _, tt := range tests {
		if got := GroupKey(tt.in); got != tt.want {
			t.Errorf("GroupKey(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestURLRoundTrip(t *testing.T) {
	tests := []struct {
		issuer, account string
		p               Params
		wantIssuer      string
	}{
		{"Example", "alice@example.com", Default, "Example"},
		{"Example Co & Sons", "bob smith", Params{SHA256, 8, 60}, "Example Co & Sons"},
		{"Ünïcødé ✓", "ünï/cødé?#=", Params{SHA512, 6, 30}, "Ünïcødé ✓"},
		{"", "carol", Default, ""},
		{"a:b", "dave", Default, "a:b"},
		{"100%+1", "erin", Default, "100%+1"},
	}
	for _, tt := range tests {
		u := URL(tt.issuer, tt.account, testSecret, tt.p)
		if strings.Contains(u, "+") || strings.Contains(u, " ") {
			t.Errorf("URL(%q, %q) = %q: want spaces as %%20 and no raw + or space", tt.issuer, tt.account, u)
		}
		k, err := pqotp.NewKeyFromURL(u)
		if err != nil {
			t.Fatalf("NewKeyFromURL(%q): %v", u, err)
		}
		if got := k.Type(); got != "totp" {
			t.Errorf("%s: got type %q, want %q", u, got, "totp")
		}
		if got := k.Issuer(); got != tt.wantIssuer {
			t.Errorf("%s: got issuer %q, want %q", u, got, tt.wantIssuer)
		}
		if got := k.AccountName(); got != tt.account {
			t.Errorf("%s: got account %q, want %q", u, got, tt.account)
		}
		if got, want := k.Secret(), EncodeSecret(testSecret); got != want {
			t.Errorf("%s: got secret %q, want %q", u, got, want)
		}
		if got := k.Period(); got != uint64(tt.p.Period) {
			t.Errorf("%s: got period %d, want %d", u, got, tt.p.Period)
		}
		if got := k.Digits().Length(); got != tt.p.Digits {
			t.Errorf("%s: got digits %d, want %d", u, got, tt.p.Digits)
		}
		if got := k.Algorithm().String(); got != tt.p.Algorithm {
			t.Errorf("%s: got algorithm %q, want %q", u, got, tt.p.Algorithm)
		}
	}
}

func TestURLLabel(t *testing.T) {
	got := URL("My Site", "al:ice", testSecret, Default)
	want := "otpauth://totp/My%20Site:al%3Aice?secret=" + EncodeSecret(testSecret) +
		"&issuer=My%20Site&algorithm=SHA1&digits=6&period=30"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestQRPNG(t *testing.T) {
	u := URL("Example", "alice@example.com", testSecret, Default)
	for _, size := range []int{MinQRSize * 2, 200, 256, 333} {
		b, err := QRPNG(u, size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("size %d: decode PNG: %v", size, err)
		}
		if got := img.Bounds(); got.Dx() != size || got.Dy() != size {
			t.Errorf("size %d: got bounds %v, want %dx%d", size, got, size, size)
		}
		dark := func(x, y int) bool {
			r, g, b, _ := img.At(x, y).RGBA()
			return r+g+b < 3*0x8000
		}
		for _, c := range [][2]int{{0, 0}, {size - 1, 0}, {0, size - 1}, {size - 1, size - 1}} {
			if dark(c[0], c[1]) {
				t.Errorf("size %d: got dark corner pixel %v, want white quiet zone", size, c)
			}
		}
		// The top-left finder pattern starts on the diagonal after the quiet
		// zone: the first dark pixel must be inside the image, but not at its edge.
		first := -1
		for i := 0; i < size; i++ {
			if dark(i, i) {
				first = i
				break
			}
		}
		if first <= 0 || first >= size/4 {
			t.Errorf("size %d: got first dark diagonal pixel at %d, want within (0, %d)", size, first, size/4)
		}
	}
}

func TestQRPNGErrors(t *testing.T) {
	u := URL("Example", "alice@example.com", testSecret, Default)
	tests := []struct {
		name string
		url  string
		size int
	}{
		{"zero size", u, 0},
		{"negative size", u, -100},
		{"below minimum", u, MinQRSize - 1},
		{"above maximum", u, MaxQRSize + 1},
		{"too many modules for size", strings.Repeat("x", 2000), MinQRSize},
		{"too long for a QR code", strings.Repeat("x", 5000), MaxQRSize},
	}
	for _, tt := range tests {
		if _, err := QRPNG(tt.url, tt.size); err == nil {
			t.Errorf("%s: got no error, want one", tt.name)
		}
	}
}
