package caddymodule

import (
	"context"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// The store methods of security keys, made to fail like the others.
func init() {
	wrappedMethods = append(wrappedMethods, "AddCredential", "UseCredential", "RenameCredential", "RemoveCredential", "AddTOTP", "PutChallenge", "TakeChallenge")
}

func (f *faultyStore) AddCredential(ctx context.Context, u string, c store.Credential, handle []byte, codes [][]byte, keep []byte) (bool, error) {
	if err := f.call("AddCredential"); err != nil {
		return false, err
	}
	return f.Store.AddCredential(ctx, u, c, handle, codes, keep)
}

func (f *faultyStore) UseCredential(ctx context.Context, u string, id []byte, use store.CredentialUse) error {
	if err := f.call("UseCredential"); err != nil {
		return err
	}
	return f.Store.UseCredential(ctx, u, id, use)
}

func (f *faultyStore) RenameCredential(ctx context.Context, u string, id []byte, name string) error {
	if err := f.call("RenameCredential"); err != nil {
		return err
	}
	return f.Store.RenameCredential(ctx, u, id, name)
}

func (f *faultyStore) RemoveCredential(ctx context.Context, u string, id []byte, keep []byte) (bool, error) {
	if err := f.call("RemoveCredential"); err != nil {
		return false, err
	}
	return f.Store.RemoveCredential(ctx, u, id, keep)
}

func (f *faultyStore) PutChallenge(ctx context.Context, key []byte, c store.Challenge) error {
	if err := f.call("PutChallenge"); err != nil {
		return err
	}
	return f.Store.PutChallenge(ctx, key, c)
}

func (f *faultyStore) TakeChallenge(ctx context.Context, key []byte, purpose string) (store.Challenge, error) {
	if err := f.call("TakeChallenge"); err != nil {
		return store.Challenge{}, err
	}
	return f.Store.TakeChallenge(ctx, key, purpose)
}

func (f *faultyStore) AddTOTP(ctx context.Context, u string, t store.TOTP) error {
	if err := f.call("AddTOTP"); err != nil {
		return err
	}
	return f.Store.AddTOTP(ctx, u, t)
}
