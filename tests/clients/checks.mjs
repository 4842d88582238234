// The tiny harness the client scripts share: named checks that print "ok" or "FAIL" with the
// error, and a summary line "N passed, N failed" that tests/integration/client_sdk_test.cc
// reads (the process exits 1 when any check failed).
export function checks(label) {
  let passed = 0, failed = 0;
  return {
    async check(name, fn) {
      try {
        await fn();
        passed++;
        console.log(`ok   ${label} ${name}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${label} ${name}: ${e && e.stack ? e.stack : e}`);
      }
    },
    expect(cond, what) { if (!cond) throw new Error(what); },
    finish() {
      console.log(`${passed} passed, ${failed} failed`);
      process.exit(failed === 0 ? 0 : 1);
    },
  };
}
