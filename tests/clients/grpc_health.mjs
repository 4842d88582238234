// Probes a running Loom daemon's gRPC health service the way load balancers and Kubernetes do,
// with the service definition from grpc's own grpc-health-check package on @grpc/grpc-js (both
// pinned in package-lock.json): Check per service name, an unknown name, then a Watch that
// stays open. Started by tests/integration/security_test.cc with LOOM_GRPC=host:port
// (plaintext) and LOOM_HEALTH_SERVICES=comma-separated names that must be SERVING.
// With LOOM_HEALTH_WATCH=1 the last check prints "watching: SERVING" and waits (at most
// 30 s) for the daemon to report NOT_SERVING or end the stream, which is what the test
// provokes with SIGTERM: a draining daemon must tell its balancer before it goes.
// Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
import grpc from "@grpc/grpc-js";
import { service } from "grpc-health-check";
import { checks } from "./checks.mjs";

const { check, expect, finish } = checks("grpc-health");
const Health = grpc.makeGenericClientConstructor(service, "Health");
const client = new Health(process.env.LOOM_GRPC, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 5000);

const checkOne = (name) =>
  new Promise((resolve) => {
    client.check({ service: name }, { deadline: deadline() }, (err, res) => resolve({ err, res }));
  });

for (const name of ["", ...(process.env.LOOM_HEALTH_SERVICES || "").split(",").filter(Boolean)]) {
  await check(`Check "${name}" is SERVING`, async () => {
    const { err, res } = await checkOne(name);
    expect(!err, `error ${err && err.code}: ${err && err.details}`);
    expect(res.status === "SERVING", `status ${res && res.status}`);
  });
}

await check("Check of a service the daemon does not serve is NOT_FOUND", async () => {
  const { err } = await checkOne("loom.v1.NoSuchService");
  expect(err && err.code === grpc.status.NOT_FOUND, `got ${err ? err.code : "SERVING"}`);
});

if (process.env.LOOM_HEALTH_WATCH === "1") {
  await check("Watch sees SERVING, then NOT_SERVING or the end when the daemon drains", async () => {
    const seen = await new Promise((resolve) => {
      const statuses = [];
      const call = client.watch({ service: "" });
      const done = () => resolve(statuses);
      const timer = setTimeout(() => {
        call.cancel();
        done();
      }, 30000);
      call.on("data", (msg) => {
        statuses.push(msg.status);
        if (msg.status === "SERVING" && statuses.length === 1) console.log("watching: SERVING");
        if (msg.status === "NOT_SERVING") {
          clearTimeout(timer);
          call.cancel();
          done();
        }
      });
      call.on("error", () => {
        clearTimeout(timer);
        statuses.push("ended");
        done();
      });
      call.on("end", () => {
        clearTimeout(timer);
        statuses.push("ended");
        done();
      });
    });
    expect(seen[0] === "SERVING", `first status ${seen[0]}`);
    expect(seen.length > 1, "the watch saw nothing after SERVING within 30 s");
    console.log(`statuses: ${seen.join(" -> ")}`);
  });
}

client.close();
finish();
