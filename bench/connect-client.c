/*
 * The connect benchmark's measuring client (issue 13): a node client spends 70-150 us of its
 * own on a connect whose kernel cost is 15-40 us, which pulls every ratio towards 1.00.
 * The benchmark compiles this with `cc -O2` at run time and runs it inside the client namespace.
 *
 *   connect-client SOURCE SERVER FIRST_PORT PORT_COUNT COUNT FIRST_LOCAL_PORT
 *     COUNT blocking connects from SOURCE (local ports counting up from FIRST_LOCAL_PORT, or
 *     the kernel's choice when 0) to SERVER, the port cycling over FIRST_PORT..+PORT_COUNT-1.
 *     Only connect() is timed (CLOCK_MONOTONIC). A connection that is accepted is reset at
 *     once (SO_LINGER 0: no TIME_WAIT on the client); a refused one (RST) is as good a sample.
 *     Prints "connected C refused R failed F", then the samples in ns on one line.
 *   connect-client SOURCE SERVER PORT probe
 *     Prints what the server's probe port answers (the source it saw).
 * IPv4 or IPv6 by the form of SERVER.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static socklen_t address_of(const char *text, unsigned port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (strchr(text, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1) return 0;
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)out;
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  if (inet_pton(AF_INET, text, &a->sin_addr) != 1) return 0;
  return sizeof *a;
}

/* A socket bound to SOURCE:local_port, reset on close, giving up a connect after 3 s. */
static int bound_socket(const char *source, unsigned local_port) {
  struct sockaddr_storage local;
  socklen_t length = address_of(source, local_port, &local);
  int fd = socket(local.ss_family, SOCK_STREAM, 0);
  struct linger reset = {1, 0};
  struct timeval limit = {3, 0};
  if (fd < 0 || length == 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (bind(fd, (struct sockaddr *)&local, length) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int probe(const char *source, const char *server, unsigned port) {
  struct sockaddr_storage remote;
  socklen_t length = address_of(server, port, &remote);
  int fd = bound_socket(source, 0);
  char seen[128];
  ssize_t got, total = 0;
  if (fd < 0 || length == 0 || connect(fd, (struct sockaddr *)&remote, length) != 0) return 1;
  while (total < (ssize_t)sizeof seen - 1 &&
         (got = read(fd, seen + total, sizeof seen - 1 - total)) > 0)
    total += got;
  seen[total] = '\0';
  printf("%s", seen);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[4], "probe") == 0)
    return probe(argv[1], argv[2], (unsigned)atoi(argv[3]));
  if (argc != 7) {
    fprintf(stderr, "usage: %s SOURCE SERVER FIRST_PORT PORT_COUNT COUNT FIRST_LOCAL_PORT\n",
            argv[0]);
    return 2;
  }
  const char *source = argv[1], *server = argv[2];
  unsigned first_port = (unsigned)atoi(argv[3]), port_count = (unsigned)atoi(argv[4]);
  long count = atol(argv[5]);
  unsigned first_local = (unsigned)atoi(argv[6]);
  long *samples = calloc(count > 0 ? (size_t)count : 1, sizeof *samples);
  long connected = 0, refused = 0, failed = 0, n = 0;
  if (!samples || port_count == 0) return 2;
  for (long i = 0; i < count; i++) {
    struct sockaddr_storage remote;
    socklen_t length = address_of(server, first_port + (unsigned)(i % port_count), &remote);
    int fd = bound_socket(source, first_local ? first_local + (unsigned)i : 0);
    struct timespec start, end;
    if (fd < 0 || length == 0) {
      failed++;
      if (fd >= 0) close(fd);
      continue;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    int result = connect(fd, (struct sockaddr *)&remote, length);
    clock_gettime(CLOCK_MONOTONIC, &end);
    int error = errno;
    close(fd);
    if (result == 0)
      connected++;
    else if (error == ECONNREFUSED)
      refused++;
    else {
      failed++;
      continue;
    }
    samples[n++] = (end.tv_sec - start.tv_sec) * 1000000000L + (end.tv_nsec - start.tv_nsec);
  }
  printf("connected %ld refused %ld failed %ld\n", connected, refused, failed);
  for (long i = 0; i < n; i++) printf(i ? " %ld" : "%ld", samples[i]);
  printf("\n");
  free(samples);
  return 0;
}
