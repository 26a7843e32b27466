package store

import (
	"slices"
)

// The changes of an account that both stores make the same way: each is
// applied to the account read in the store's transaction (changeAccount,
// changeAccountPG), which then writes it back, or deletes it when 2FA is
// off. Only how the account is read, locked and written differs between
// the stores.

// useStep records a TOTP step as used if it is newer than the last one.
func useStep(step int64) func(a *Account) error {
	return func(a *Account) error {
		if a.TOTP == nil {
			return ErrNotEnabled // security keys only
		}
		if step <= a.TOTP.LastStep {
			return ErrStepUsed
		}
		a.TOTP.LastStep = step
		return nil
	}
}

// useCode removes the backup code with that hash, and sets left to how
// many remain.
func useCode(hash []byte, left *int) func(a *Account) error {
	return func(a *Account) error {
		var ok bool
		a.BackupCodes, ok = removeCode(a.BackupCodes, hash)
		if !ok {
			return ErrCodeUnknown
		}
		*left = len(a.BackupCodes)
		return nil
	}
}

// turnOff is 2FA off: the app, every security key and the codes.
func turnOff(a *Account) error {
	*a = Account{Name: a.Name}
	return nil
}

// useCredential records an assertion of the credential id.
func useCredential(id []byte, u CredentialUse) func(a *Account) error {
	return func(a *Account) error {
		i := credentialIndex(a, id)
		if i < 0 {
			return ErrNoCredential
		}
		c := &a.Credentials[i]
		if (u.SignCount != 0 || c.SignCount != 0) && u.SignCount <= c.SignCount {
			return ErrSignCount
		}
		c.SignCount, c.BackupState, c.LastUsed = u.SignCount, u.BackupState, u.At
		c.UserVerified = c.UserVerified || u.UserVerified
		return nil
	}
}

// renameCredential renames the credential id.
func renameCredential(id []byte, name string) func(a *Account) error {
	return func(a *Account) error {
		i := credentialIndex(a, id)
		if i < 0 {
			return ErrNoCredential
		}
		a.Credentials[i].Name = name
		return nil
	}
}

// removeCredential removes the credential id; when it was the last second
// factor, 2FA is off (the codes and the user handle go too). on says
// whether 2FA is still on.
func removeCredential(id []byte, on *bool) func(a *Account) error {
	return func(a *Account) error {
		i := credentialIndex(a, id)
		if i < 0 {
			return ErrNoCredential
		}
		a.Credentials = slices.Delete(a.Credentials, i, i+1)
		if len(a.Credentials) == 0 {
			a.Credentials = nil
		}
		if !a.Enabled() {
			a.BackupCodes, a.UserHandle = nil, nil
		}
		*on = a.Enabled()
		return nil
	}
}

// addTOTP adds the app beside security keys.
func addTOTP(t TOTP) func(a *Account) error {
	return func(a *Account) error {
		if a.TOTP != nil {
			return ErrAlreadyEnabled
		}
		a.TOTP = &t
		return nil
	}
}
