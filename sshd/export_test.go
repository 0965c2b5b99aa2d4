package sshd

// WithServeHook returns a Config option that calls hook as each session
// starts serving its command, so that tests can inject a panic.
func WithServeHook(hook func(command string)) func(*Config) {
	return func(c *Config) { c.testHookServe = hook }
}
