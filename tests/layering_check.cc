// The layering, enforced by the linker: this program is linked with every domain library whole
// (every object file, used or not) and without gRPC. If domain code (the ledger, the analyzer,
// the coordinator's pipeline, mesh and HTTP door, the worker's providers) calls into gRPC, or
// into the RPC adapters above it, the link fails with the undefined symbol. See
// tests/CMakeLists.txt; it runs nothing.
int main() { return 0; }
