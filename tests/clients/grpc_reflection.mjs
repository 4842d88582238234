// Drives a running Loom coordinator's gRPC server reflection with grpc-js-reflection-client
// (on @grpc/grpc-js; pinned in package-lock.json), as a tool that knows no .proto would: over
// v1 (Loom's own, common/reflection_v1.h) and v1alpha (Debian's gRPC), list the services, then
// the Orchestrator's methods from the descriptors it downloads. Started by
// tests/integration/security_test.cc with LOOM_GRPC=host:port (plaintext).
// Prints one line per check and "N passed, N failed"; exits 1 if any check failed.
import grpc from "@grpc/grpc-js";
import reflection from "grpc-js-reflection-client";
import { checks } from "./checks.mjs";

const { check, expect, finish } = checks("grpc-reflection");
const { GrpcReflection } = reflection;

for (const version of ["v1", "v1alpha"]) {
  await check(`${version}: the services and the Orchestrator's methods`, async () => {
    const client = new GrpcReflection(process.env.LOOM_GRPC, grpc.ChannelCredentials.createInsecure(), {}, version);
    const services = await client.listServices();
    for (const s of ["loom.v1.Orchestrator", "loom.v1.Registry", "grpc.health.v1.Health"]) {
      expect(services.includes(s), `${s} missing from ${services}`);
    }
    const methods = (await client.listMethods("loom.v1.Orchestrator")).map((m) => m.name);
    for (const m of ["Complete", "StreamComplete", "Explain", "ListDevices"]) {
      expect(methods.includes(m), `${m} missing from ${methods}`);
    }
  });
}

finish();
