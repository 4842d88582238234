// File: tests/integration/postgres_server.h
// A real PostgreSQL server for tests: initdb in a fresh temporary directory, pg_ctl start on a
// free loopback port (and a socket in the same directory), stopped and deleted when the object
// goes. Run as root (CI, this machine) the server runs as the unprivileged `postgres` user that
// Debian's package creates (PostgreSQL refuses to run as root). Authentication is `trust` for
// the one superuser `loom`, on loopback only. The binaries come from `pg_config --bindir`
// (deploy/setup.sh installs postgresql and libpq-dev).
//
//   PostgresServer pg;
//   ASSERT_TRUE(pg.Start()) << pg.error();
//   std::string db = pg.CreateDatabase("t1");  // a conninfo for a new empty database
#ifndef LOOM_TESTS_INTEGRATION_POSTGRES_SERVER_H_
#define LOOM_TESTS_INTEGRATION_POSTGRES_SERVER_H_

#include <string>
#include <vector>

namespace loom::testing {

class PostgresServer {
 public:
  PostgresServer() = default;
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Creates the cluster and starts the server (bounded: pg_ctl -w with a 30 s timeout). False
  // with error() set when PostgreSQL is not installed or does not start.
  bool Start();
  void Stop();
  // Stops the server and keeps its data (clients see it go away); Resume starts it again on
  // the same port. Both bounded like Start.
  bool Halt();
  bool Resume();
  const std::string& error() const { return error_; }
  int port() const { return port_; }

  // A conninfo for `database` ("postgres": the default one).
  std::string ConnInfo(const std::string& database = "postgres") const;
  // Creates `database` (dropping any of that name first); returns its conninfo, or "" with
  // error() set.
  std::string CreateDatabase(const std::string& database);
  // Runs one SQL statement on `database` through psql; its stdout, or "" with error() set.
  std::string Sql(const std::string& database, const std::string& sql);

 private:
  std::string Bin(const std::string& tool) const { return bindir_ + "/" + tool; }
  // Runs a server tool, as `postgres` when this process is root.
  bool RunTool(const std::string& tool, const std::vector<std::string>& args, std::string* out);
  bool StartOnPort();

  std::string bindir_, dir_, error_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace loom::testing

#endif  // LOOM_TESTS_INTEGRATION_POSTGRES_SERVER_H_
