package store

import "errors"

// The argument checks of the changes both stores make: one function per
// shape of arguments, so that the two stores refuse exactly the same
// input. Each returns an error for the caller to wrap with its operation.

// userAndTOTP checks a user name and a TOTP enrolment (AddTOTP).
func userAndTOTP(user string, t TOTP) error {
	if err := checkUser(user); err != nil {
		return err
	}
	if len(t.SealedSecret) == 0 {
		return errors.New("empty sealed secret")
	}
	return nil
}

// userAndCodes checks a user name and returns a copy of the backup-code
// hashes (ReplaceBackupCodes).
func userAndCodes(user string, backupCodes [][]byte) ([][]byte, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	return cloneCodes(backupCodes)
}

// enableArgs checks EnableTOTP's arguments and returns a copy of the
// backup-code hashes.
func enableArgs(user string, t TOTP, backupCodes [][]byte) ([][]byte, error) {
	if err := userAndTOTP(user, t); err != nil {
		return nil, err
	}
	return cloneCodes(backupCodes)
}

// credentialArgs checks AddCredential's arguments and returns a copy of
// the backup-code hashes.
func credentialArgs(user string, c Credential, handle []byte, backupCodes [][]byte) ([][]byte, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	if err := checkCredential(c); err != nil {
		return nil, err
	}
	if len(handle) == 0 {
		return nil, errors.New("empty user handle")
	}
	return cloneCodes(backupCodes)
}

// userAndHash checks a user name and a password hash (SetPassword,
// RehashPassword).
func userAndHash(name, hash string) error {
	if err := checkUser(name); err != nil {
		return err
	}
	if hash == "" {
		return errors.New("empty password hash")
	}
	return nil
}
