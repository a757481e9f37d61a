/* Unit tests of the wire protocol codec (common/proto). */

#include <config.h>

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "crc32c.h"
#include "frame.h"
#include "full-rw.h"
#include "protocol.h"

/* Encode a valid header into BUF. */
static void
make_header (uint8_t *buf, uint8_t opcode, uint16_t flags, uint32_t status,
             uint32_t length)
{
  struct proto_header h = {
    .magic = PROTO_MAGIC,
    .version = PROTO_VERSION,
    .opcode = opcode,
    .flags = flags,
    .status = status,
    .length = length,
    .tag = 0x1122334455667788ull,
  };
  proto_header_encode (&h, buf);
}

START_TEST (test_header_round_trip)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;

  make_header (buf, PROTO_OP_SEG_WRITE, PROTO_FLAG_FUA, 0, 4096 + 32);
  /* Big-endian on the wire. */
  ck_assert_int_eq (buf[0], 'T');
  ck_assert_int_eq (buf[3], 'S');
  ck_assert_int_eq (proto_header_decode (buf, &h, PROTO_MAX_IO_PAYLOAD), 0);
  ck_assert_uint_eq (h.opcode, PROTO_OP_SEG_WRITE);
  ck_assert_uint_eq (h.flags, PROTO_FLAG_FUA);
  ck_assert_uint_eq (h.length, 4096 + 32);
  ck_assert_uint_eq (h.tag, 0x1122334455667788ull);
}
END_TEST

START_TEST (test_header_bad_magic)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;

  make_header (buf, PROTO_OP_HELLO, 0, 0, 0);
  buf[0] = 'X';
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), -EBADMSG);
}
END_TEST

START_TEST (test_header_bad_version)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;

  make_header (buf, PROTO_OP_HELLO, 0, 0, 0);
  buf[4] = PROTO_VERSION + 1;
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), -EPROTO);
}
END_TEST

START_TEST (test_header_unknown_opcode)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;
  int op;

  for (op = 0; op < 256; ++op) {
    int known = proto_opcode_known (op);

    make_header (buf, op, 0, 0, 0);
    ck_assert_int_eq (proto_header_decode (buf, &h, 1024),
                      known ? 0 : -EBADMSG);
  }
}
END_TEST

/* The opcode table (opcodes.def): names, limits and "known" agree, and
 * every opcode is served by at least one daemon.
 */
START_TEST (test_opcode_table)
{
  static const struct {
    uint8_t op;
    const char *name;
    uint32_t max;
    unsigned by;
  } ops[] = {
#define X(name, value, payload_max, served_by) \
  { PROTO_OP_##name, #name, (payload_max), (served_by) },
#include "opcodes.def"
#undef X
  };
  size_t i, nmds = 0, nss = 0;
  int op, nknown = 0;

  for (i = 0; i < sizeof ops / sizeof ops[0]; ++i) {
    ck_assert (proto_opcode_known (ops[i].op));
    ck_assert_str_eq (proto_opcode_name (ops[i].op), ops[i].name);
    ck_assert_uint_eq (proto_max_payload (ops[i].op), ops[i].max);
    ck_assert_uint_ne (ops[i].by, 0);
    nmds += (ops[i].by & PROTO_BY_MDS) != 0;
    nss += (ops[i].by & PROTO_BY_STORESRV) != 0;
  }
  for (op = 0; op < 256; ++op) {
    if (proto_opcode_known (op))
      nknown++;
    else {
      ck_assert_str_eq (proto_opcode_name (op), "unknown");
      ck_assert_uint_eq (proto_max_payload (op), PROTO_MAX_META_PAYLOAD);
    }
  }
  ck_assert_int_eq (nknown, sizeof ops / sizeof ops[0]);
  ck_assert_uint_eq (nmds, PROTO_NR_OPS_MDS);
  ck_assert_uint_eq (nss, PROTO_NR_OPS_STORESRV);
  ck_assert_uint_eq (proto_max_payload (PROTO_OP_HELLO),
                     PROTO_MAX_PREAUTH_PAYLOAD);
  ck_assert_uint_eq (proto_max_payload (PROTO_OP_SEG_WRITE),
                     PROTO_MAX_IO_PAYLOAD);
  ck_assert_uint_eq (proto_max_payload (PROTO_OP_MAP_GET),
                     PROTO_MAX_META_PAYLOAD);
}
END_TEST

START_TEST (test_header_bad_flags_status)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;

  make_header (buf, PROTO_OP_SEG_READ, 0x0100, 0, 0);
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), -EBADMSG);
  /* A request may not carry a status. */
  make_header (buf, PROTO_OP_SEG_READ, 0, PROTO_EIO, 0);
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), -EBADMSG);
  make_header (buf, PROTO_OP_SEG_READ, PROTO_FLAG_REPLY, PROTO_EIO, 0);
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), 0);
  make_header (buf, PROTO_OP_SEG_READ, PROTO_FLAG_REPLY, PROTO_STATUS_MAX + 1,
               0);
  ck_assert_int_eq (proto_header_decode (buf, &h, 1024), -EBADMSG);
}
END_TEST

START_TEST (test_header_oversized)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header h;

  make_header (buf, PROTO_OP_SEG_WRITE, 0, 0, 0xffffffffu);
  ck_assert_int_eq (proto_header_decode (buf, &h, PROTO_MAX_IO_PAYLOAD),
                    -EMSGSIZE);
  make_header (buf, PROTO_OP_VOL_LIST, 0, 0, PROTO_MAX_META_PAYLOAD + 1);
  ck_assert_int_eq (
      proto_header_decode (buf, &h, proto_max_payload (PROTO_OP_VOL_LIST)),
      -EMSGSIZE);
  ck_assert_uint_eq (proto_max_payload (PROTO_OP_SEG_READ),
                     PROTO_MAX_IO_PAYLOAD);
}
END_TEST

START_TEST (test_status_errno)
{
  uint32_t s;

  for (s = 0; s <= PROTO_STATUS_MAX; ++s) {
    ck_assert_str_ne (proto_status_name (s), "unknown");
    ck_assert_uint_eq (proto_status_from_errno (proto_status_to_errno (s)), s);
  }
  ck_assert_uint_eq (proto_status_from_errno (EOPNOTSUPP), PROTO_ENOTSUP);
  ck_assert_uint_eq (proto_status_from_errno (EDQUOT), PROTO_ENOSPC);
  ck_assert_uint_eq (proto_status_from_errno (EMSGSIZE), PROTO_EBADMSG);
  ck_assert_uint_eq (proto_status_from_errno (ELOOP), PROTO_EIO);
  ck_assert_int_eq (proto_status_to_errno (999), EIO);
  ck_assert_uint_eq (proto_status_from_errno (EREMOTE), PROTO_ENOTLEADER);
  ck_assert_int_eq (proto_status_to_errno (PROTO_ENOTLEADER), EREMOTE);
  ck_assert_str_eq (proto_status_name (PROTO_ENOTLEADER), "ENOTLEADER");
}
END_TEST

START_TEST (test_hello)
{
  struct proto_hello in = { .version = 1,
                            .role = PROTO_ROLE_PLUGIN,
                            .incarnation = 0x0102030405060708ull,
                            .auth_len = 3,
                            .auth = { 1, 2, 3 } };
  struct proto_hello out;
  struct proto_wbuf wb = { 0 };

  memset (in.uuid, 0xab, 16);
  proto_encode_hello (&in, &wb);
  ck_assert_int_eq (wb.err, 0);
  ck_assert_uint_eq (wb.len, 36 + 3);
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.role, PROTO_ROLE_PLUGIN);
  ck_assert_uint_eq (out.incarnation, 0x0102030405060708ull);
  ck_assert_mem_eq (out.uuid, in.uuid, 16);
  ck_assert_uint_eq (out.auth_len, 3);
  ck_assert_mem_eq (out.auth, in.auth, 3);
  /* Truncated, trailing byte, reserved bytes set, auth too long. */
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len - 1, &out), -EBADMSG);
  wb.data[34] = 1;
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len, &out), -EBADMSG);
  wb.data[34] = 0;
  wb.data[32] = 0xff;
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

/* An MDS's HELLO carries its epoch where a storage server's carries its
 * incarnation (bytes 24-31); other roles' epochs are not sent.
 */
START_TEST (test_hello_mds_epoch)
{
  static const uint8_t epoch_be[8] = { 0, 0, 0, 0, 0, 0, 0x12, 0x34 };
  struct proto_hello in = {
    .version = 3, .role = PROTO_ROLE_MDS, .incarnation = 99, .mds_epoch = 0x1234
  };
  struct proto_hello out;
  struct proto_wbuf wb = { 0 };

  proto_encode_hello (&in, &wb);
  ck_assert_int_eq (wb.err, 0);
  ck_assert_uint_eq (wb.len, 36);
  ck_assert_mem_eq (wb.data + 24, epoch_be, 8);
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.role, PROTO_ROLE_MDS);
  ck_assert_uint_eq (out.mds_epoch, 0x1234);
  ck_assert_uint_eq (out.incarnation, 0);
  proto_wbuf_free (&wb);

  in.role = PROTO_ROLE_STORESRV;
  proto_encode_hello (&in, &wb);
  ck_assert_int_eq (wb.err, 0);
  ck_assert_int_eq (proto_decode_hello (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.incarnation, 99);
  ck_assert_uint_eq (out.mds_epoch, 0);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_register)
{
  struct proto_register in = { .segment_size = 4 << 20,
                               .capacity = 1ull << 40,
                               .used = 12345,
                               .incarnation = 77,
                               .flags = PROTO_REG_UNCLEAN,
                               .index_seq = 99,
                               .address = "127.0.0.1:7421",
                               .zone = "rack1" };
  struct proto_register out;
  struct proto_wbuf wb = { 0 };

  memset (in.uuid, 1, 16);
  memset (in.cluster_uuid, 2, 16);
  proto_encode_register (&in, &wb);
  ck_assert_int_eq (proto_decode_register (wb.data, wb.len, &out), 0);
  ck_assert_str_eq (out.address, "127.0.0.1:7421");
  ck_assert_str_eq (out.zone, "rack1");
  ck_assert_uint_eq (out.capacity, 1ull << 40);
  ck_assert_mem_eq (out.cluster_uuid, in.cluster_uuid, 16);
  ck_assert_uint_eq (out.incarnation, 77);
  ck_assert_uint_eq (out.flags, PROTO_REG_UNCLEAN);
  ck_assert_uint_eq (out.index_seq, 99);
  /* An unknown flag is rejected. */
  wb.data[16 + 16 + 4 + 8 + 8 + 8 + 3] = 0x82;
  ck_assert_int_eq (proto_decode_register (wb.data, wb.len, &out), -EBADMSG);
  wb.data[16 + 16 + 4 + 8 + 8 + 8 + 3] = PROTO_REG_UNCLEAN;
  /* A string with an embedded NUL is rejected. */
  wb.data[16 + 16 + 4 + 8 + 8 + 8 + 4 + 8 + 2 + 3] = '\0';
  ck_assert_int_eq (proto_decode_register (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_string_too_long)
{
  struct proto_vol_request in = { .size = 1 << 20 };
  struct proto_vol_request out;
  struct proto_wbuf wb = { 0 };
  uint8_t raw[8 + 4 + 4 + 4 + 2 + 200];

  /* The encoder refuses a name over the maximum... */
  memset (in.name, 'a', PROTO_NAME_MAX);
  in.name[PROTO_NAME_MAX] = '\0';
  proto_encode_vol_request (&in, &wb);
  ck_assert_int_eq (wb.err, 0);
  ck_assert_int_eq (proto_decode_vol_request (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (strlen (out.name), PROTO_NAME_MAX);
  proto_wbuf_free (&wb);
  /* ... and the decoder a length field over it. */
  memset (raw, 'a', sizeof raw);
  memset (raw, 0, 20);
  raw[20] = 0;
  raw[21] = 200;
  ck_assert_int_eq (proto_decode_vol_request (raw, sizeof raw, &out), -EBADMSG);
}
END_TEST

/* VOL_OPEN's open token: absent when zero (the old wire format), kept
 * exactly when set, and any other trailing length refused.
 */
START_TEST (test_open_token)
{
  struct proto_vol_request in = { .flags = PROTO_OPEN_RW };
  struct proto_vol_request out;
  struct proto_wbuf wb = { 0 };
  size_t plain;

  strcpy (in.name, "vol");
  proto_encode_vol_request (&in, &wb);
  ck_assert_int_eq (wb.err, 0);
  plain = wb.len;
  ck_assert_int_eq (proto_decode_vol_request (wb.data, wb.len, &out), 0);
  ck_assert_int_eq (out.token[0] | out.token[15], 0);
  proto_wbuf_free (&wb);

  memset (in.token, 0xa5, sizeof in.token);
  in.token[15] = 1;
  proto_encode_vol_request (&in, &wb);
  ck_assert_uint_eq (wb.len, plain + sizeof in.token);
  ck_assert_int_eq (proto_decode_vol_request (wb.data, wb.len, &out), 0);
  ck_assert_mem_eq (out.token, in.token, sizeof in.token);
  ck_assert_str_eq (out.name, "vol");
  /* A token cut short, or one byte too many, is malformed. */
  ck_assert_int_eq (proto_decode_vol_request (wb.data, wb.len - 1, &out),
                    -EBADMSG);
  ck_assert_int_eq (proto_decode_vol_request (wb.data, plain + 1, &out),
                    -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_volume_list)
{
  struct proto_volume_info v[2] = {
    { .id = 1,
      .size = 1 << 30,
      .replicas = 2,
      .flags = PROTO_VOL_CLEAN,
      .epoch = 7,
      .segments = 3,
      .min_copies = 2,
      .name = "vol0" },
    { .id = 2, .size = 512, .replicas = 3, .name = "v" },
  };
  struct proto_volume_list in = { .n = 2, .volumes = v }, out;
  struct proto_wbuf wb = { 0 };

  proto_encode_volume_list (&in, &wb);
  ck_assert_int_eq (proto_decode_volume_list (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 2);
  ck_assert_str_eq (out.volumes[0].name, "vol0");
  ck_assert_uint_eq (out.volumes[0].epoch, 7);
  ck_assert_uint_eq (out.volumes[0].min_copies, 2);
  ck_assert_uint_eq (out.volumes[1].replicas, 3);
  proto_volume_list_free (&out);
  /* A count larger than the payload can hold fails before allocating. */
  wb.data[0] = 0x7f;
  ck_assert_int_eq (proto_decode_volume_list (wb.data, wb.len, &out), -EBADMSG);
  ck_assert_ptr_null (out.volumes);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_server_list)
{
  struct proto_server_info s = { .id = 3,
                                 .state = PROTO_SERVER_DOWN,
                                 .capacity = 10,
                                 .used = 4,
                                 .segments = 1,
                                 .address = "unix:/tmp/s",
                                 .zone = "" };
  struct proto_server_list in = { .n = 1, .servers = &s }, out;
  struct proto_wbuf wb = { 0 };

  proto_encode_server_list (&in, &wb);
  ck_assert_int_eq (proto_decode_server_list (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 1);
  ck_assert_uint_eq (out.servers[0].state, PROTO_SERVER_DOWN);
  ck_assert_str_eq (out.servers[0].address, "unix:/tmp/s");
  ck_assert_str_eq (out.servers[0].zone, "");
  proto_server_list_free (&out);
  ck_assert_int_eq (proto_decode_server_list (wb.data, wb.len - 1, &out),
                    -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_map)
{
  struct proto_map_entry e[2] = {
    { .index = 5,
      .segment = 100,
      .gen = 77,
      .nreplicas = 2,
      .replicas = { { 1, PROTO_REPLICA_OK }, { 2, PROTO_REPLICA_STALE } } },
    { .index = 9,
      .segment = 101,
      .nreplicas = 1,
      .replicas = { { 3, PROTO_REPLICA_SYNCING } } },
  };
  struct proto_map in = { .n = 2, .entries = e }, out;
  struct proto_wbuf wb = { 0 };

  proto_encode_map (&in, &wb);
  ck_assert_uint_eq (wb.len, 4 + 28 + 16 + 28 + 8);
  ck_assert_int_eq (proto_decode_map (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 2);
  ck_assert_uint_eq (out.entries[0].replicas[1].server, 2);
  ck_assert_uint_eq (out.entries[0].replicas[1].state, PROTO_REPLICA_STALE);
  ck_assert_uint_eq (out.entries[1].index, 9);
  ck_assert_uint_eq (out.entries[0].gen, 77);
  proto_map_free (&out);

  /* nreplicas 0, nreplicas too large, bad state, out of order. */
  wb.data[4 + 24] = 0;
  ck_assert_int_eq (proto_decode_map (wb.data, wb.len, &out), -EBADMSG);
  wb.data[4 + 24] = PROTO_REPLICAS_MAX + 1;
  ck_assert_int_eq (proto_decode_map (wb.data, wb.len, &out), -EBADMSG);
  wb.data[4 + 24] = 2;
  wb.data[4 + 28 + 4] = 9;
  ck_assert_int_eq (proto_decode_map (wb.data, wb.len, &out), -EBADMSG);
  wb.data[4 + 28 + 4] = PROTO_REPLICA_OK;
  wb.data[4 + 44 + 7] = 5;
  ck_assert_int_eq (proto_decode_map (wb.data, wb.len, &out), -EBADMSG);
  ck_assert_ptr_null (out.entries);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_map_request)
{
  struct proto_map_request in = { .volume = 1,
                                  .epoch = 2,
                                  .start = 3,
                                  .count = PROTO_MAP_MAX },
                           out;
  struct proto_wbuf wb = { 0 };

  proto_encode_map_request (&in, &wb);
  ck_assert_int_eq (proto_decode_map_request (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.count, PROTO_MAP_MAX);
  proto_wbuf_free (&wb);
  in.count = 0;
  proto_encode_map_request (&in, &wb);
  ck_assert_int_eq (proto_decode_map_request (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
  in.count = PROTO_MAP_MAX + 1;
  proto_encode_map_request (&in, &wb);
  ck_assert_int_eq (proto_decode_map_request (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_heartbeat_segments)
{
  uint64_t segs[3] = { 1, 2, 0xffffffffffffffffull };
  struct proto_heartbeat in = { .server_id = 4,
                                .capacity = 1,
                                .used = 2,
                                .index_seq = 5,
                                .n = 3,
                                .segments = segs },
                         out;
  struct proto_segment_list sl;
  struct proto_wbuf wb = { 0 };
  uint8_t bad[4 + 8 + 8 + 8 + 4];

  proto_encode_heartbeat (&in, &wb);
  ck_assert_int_eq (proto_decode_heartbeat (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 3);
  ck_assert_uint_eq (out.index_seq, 5);
  ck_assert_uint_eq (out.segments[2], 0xffffffffffffffffull);
  proto_heartbeat_free (&out);
  proto_wbuf_free (&wb);

  /* Claims 2^32-1 segments in a 32-byte payload. */
  memset (bad, 0, sizeof bad);
  memset (bad + 28, 0xff, 4);
  ck_assert_int_eq (proto_decode_heartbeat (bad, sizeof bad, &out), -EBADMSG);
  ck_assert_int_eq (proto_decode_segment_list (bad + 28, 4, &sl), -EBADMSG);
}
END_TEST

START_TEST (test_small_fixed)
{
  struct proto_lease l = { 1, 2 }, l2;
  struct proto_replica_failed f = { 1, 2, 3, 4 }, f2;
  struct proto_raise_gen g = { 1, 2, 3, UINT64_MAX }, g2;
  struct proto_open_reply o = { .volume = { .id = 9, .name = "x" },
                                .segment_size = 65536,
                                .lease_ms = 15000 },
                          o2;
  /* Static: two of these exceed the stack frame limit. */
  static struct proto_status_info s = { .segment_size = 1,
                                        .servers = 3,
                                        .used = 99,
                                        .degraded = 5,
                                        .resyncing = 2,
                                        .unproven = 7 },
                                  s2;
  struct proto_register_reply r = { .server_id = 5, .heartbeat_ms = 1000 }, r2;
  struct proto_wbuf wb = { 0 };

  proto_encode_lease (&l, &wb);
  ck_assert_int_eq (proto_decode_lease (wb.data, wb.len, &l2), 0);
  ck_assert_uint_eq (l2.epoch, 2);
  ck_assert_int_eq (proto_decode_lease (wb.data, wb.len - 1, &l2), -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_replica_failed (&f, &wb);
  ck_assert_int_eq (proto_decode_replica_failed (wb.data, wb.len, &f2), 0);
  ck_assert_uint_eq (f2.server, 4);
  proto_wbuf_free (&wb);
  proto_encode_raise_gen (&g, &wb);
  ck_assert_uint_eq (wb.len, 32);
  ck_assert_int_eq (proto_decode_raise_gen (wb.data, wb.len, &g2), 0);
  ck_assert_uint_eq (g2.segment, 3);
  ck_assert_uint_eq (g2.gen, UINT64_MAX);
  ck_assert_int_eq (proto_decode_raise_gen (wb.data, wb.len - 1, &g2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_open_reply (&o, &wb);
  ck_assert_int_eq (proto_decode_open_reply (wb.data, wb.len, &o2), 0);
  ck_assert_str_eq (o2.volume.name, "x");
  ck_assert_uint_eq (o2.lease_ms, 15000);
  proto_wbuf_free (&wb);
  proto_encode_status_info (&s, &wb);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), 0);
  ck_assert_uint_eq (s2.used, 99);
  ck_assert_uint_eq (s2.degraded, 5);
  ck_assert_uint_eq (s2.resyncing, 2);
  ck_assert_uint_eq (s2.unproven, 7);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len - 8, &s2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_register_reply (&r, &wb);
  ck_assert_int_eq (proto_decode_register_reply (wb.data, wb.len, &r2), 0);
  ck_assert_uint_eq (r2.heartbeat_ms, 1000);
  proto_wbuf_free (&wb);
}
END_TEST

/* STATUS carries the misplaced count, the domains and the zone list;
 * a count of zones above the maximum or above zones_total, or an
 * unknown zone flag, is refused.
 */
START_TEST (test_status_zones)
{
  /* Static: two of these exceed the stack frame limit. */
  static struct proto_status_info s = { .misplaced = 4,
                                        .domains_needed = 2,
                                        .domains_room = 1,
                                        .zones_total = 3,
                                        .nzones = 2 },
                                  s2;
  struct proto_wbuf wb = { 0 };
  uint8_t *p;

  snprintf (s.zones[0].zone, sizeof s.zones[0].zone, "a");
  s.zones[0].servers = 2;
  s.zones[0].flags = PROTO_ZONE_LOW;
  s.zones[0].room = 1 << 20;
  s.zones[0].usable = 1 << 30;
  snprintf (s.zones[1].zone, sizeof s.zones[1].zone, "b");
  s.zones[1].usable = 5;
  proto_encode_status_info (&s, &wb);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), 0);
  ck_assert_uint_eq (s2.misplaced, 4);
  ck_assert_uint_eq (s2.domains_needed, 2);
  ck_assert_uint_eq (s2.domains_room, 1);
  ck_assert_uint_eq (s2.zones_total, 3);
  ck_assert_uint_eq (s2.nzones, 2);
  ck_assert_str_eq (s2.zones[0].zone, "a");
  ck_assert_uint_eq (s2.zones[0].servers, 2);
  ck_assert_uint_eq (s2.zones[0].flags, PROTO_ZONE_LOW);
  ck_assert_uint_eq (s2.zones[0].room, 1 << 20);
  ck_assert_uint_eq (s2.zones[0].usable, 1 << 30);
  ck_assert_str_eq (s2.zones[1].zone, "b");
  ck_assert_uint_eq (s2.zones[1].usable, 5);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len - 1, &s2),
                    -EBADMSG);
  /* The last zone's flags (u32 before room and usable, then the HA part
   * without HA: ha_flags, "", epoch, published, "", no standby, no etcd
   * endpoint, 32 bytes): unknown bit.
   */
  p = (uint8_t *)wb.data + wb.len - 32 - 16 - 1;
  *p = 0x2;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);

  /* More zones listed than the total. */
  s.zones_total = 1;
  proto_encode_status_info (&s, &wb);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

/* STATUS carries the HA part: the MDS, its standbys, etcd's health; a
 * count above the maximum or an unknown flag is refused.
 */
START_TEST (test_status_ha)
{
  /* Static: two of these exceed the stack frame limit. */
  static struct proto_status_info s = { .ha_flags = PROTO_STATUS_HA,
                                        .mds_name = "a",
                                        .epoch = 42,
                                        .published = 100,
                                        .sync = "b",
                                        .nstandbys = 2,
                                        .netcd = 3 },
                                  s2;
  struct proto_wbuf wb = { 0 };
  uint8_t *p;

  s.standbys[0] = (struct proto_standby_info){
    .name = "b", .flags = PROTO_STANDBY_SYNC, .acked = 100, .seen_ms = 250
  };
  s.standbys[1] = (struct proto_standby_info){
    .name = "c", .acked = 90, .lag = 10, .seen_ms = UINT32_MAX
  };
  snprintf (s.etcd[0].url, sizeof s.etcd[0].url, "http://127.0.0.1:2379");
  s.etcd[0].flags = PROTO_ETCD_HEALTHY | PROTO_ETCD_LEADER;
  snprintf (s.etcd[0].version, sizeof s.etcd[0].version, "3.4.23");
  snprintf (s.etcd[1].url, sizeof s.etcd[1].url, "http://127.0.0.1:2381");
  s.etcd[1].flags = PROTO_ETCD_HEALTHY;
  snprintf (s.etcd[1].version, sizeof s.etcd[1].version, "3.4.23");
  snprintf (s.etcd[2].url, sizeof s.etcd[2].url, "http://127.0.0.1:2383");
  proto_encode_status_info (&s, &wb);
  ck_assert_int_eq (wb.err, 0);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), 0);
  ck_assert_uint_eq (s2.ha_flags, PROTO_STATUS_HA);
  ck_assert_str_eq (s2.mds_name, "a");
  ck_assert_uint_eq (s2.epoch, 42);
  ck_assert_uint_eq (s2.published, 100);
  ck_assert_str_eq (s2.sync, "b");
  ck_assert_uint_eq (s2.nstandbys, 2);
  ck_assert_str_eq (s2.standbys[0].name, "b");
  ck_assert_uint_eq (s2.standbys[0].flags, PROTO_STANDBY_SYNC);
  ck_assert_uint_eq (s2.standbys[0].acked, 100);
  ck_assert_uint_eq (s2.standbys[0].lag, 0);
  ck_assert_uint_eq (s2.standbys[0].seen_ms, 250);
  ck_assert_str_eq (s2.standbys[1].name, "c");
  ck_assert_uint_eq (s2.standbys[1].flags, 0);
  ck_assert_uint_eq (s2.standbys[1].acked, 90);
  ck_assert_uint_eq (s2.standbys[1].lag, 10);
  ck_assert_uint_eq (s2.standbys[1].seen_ms, UINT32_MAX);
  ck_assert_uint_eq (s2.netcd, 3);
  ck_assert_str_eq (s2.etcd[0].url, "http://127.0.0.1:2379");
  ck_assert_uint_eq (s2.etcd[0].flags, PROTO_ETCD_HEALTHY | PROTO_ETCD_LEADER);
  ck_assert_str_eq (s2.etcd[0].version, "3.4.23");
  ck_assert_uint_eq (s2.etcd[1].flags, PROTO_ETCD_HEALTHY);
  ck_assert_str_eq (s2.etcd[2].url, "http://127.0.0.1:2383");
  ck_assert_uint_eq (s2.etcd[2].flags, 0);
  ck_assert_str_eq (s2.etcd[2].version, "");
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len - 1, &s2),
                    -EBADMSG);
  /* The last endpoint's flags (u32 before its empty version, 2 bytes). */
  p = (uint8_t *)wb.data + wb.len - 2 - 1;
  *p = 0x4;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);

  /* More standbys or endpoints than the maximum, an unknown HA or
   * standby flag.
   */
  s.netcd = 0;
  s.nstandbys = 1;
  proto_encode_status_info (&s, &wb);
  /* The standby's flags' low byte: then acked, lag, seen_ms, netcd. */
  p = (uint8_t *)wb.data + wb.len - 24 - 1;
  *p = 0x2;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  *p = 0x1;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), 0);
  p = (uint8_t *)wb.data + wb.len - 1;
  *p = PROTO_STATUS_ETCD_MAX + 1;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);
  s.nstandbys = 0;
  proto_encode_status_info (&s, &wb);
  /* nstandbys u32, netcd u32. */
  p = (uint8_t *)wb.data + wb.len - 4 - 1;
  *p = PROTO_STATUS_STANDBYS_MAX + 1;
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);
  s.ha_flags = 0x2;
  proto_encode_status_info (&s, &wb);
  ck_assert_int_eq (proto_decode_status_info (wb.data, wb.len, &s2), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_seg_io)
{
  struct proto_seg_io in = { .segment = 1,
                             .volume = 2,
                             .epoch = 3,
                             .gen = 6,
                             .offset = 4,
                             .length = 5,
                             .index = 7 },
                      out;
  uint8_t buf[PROTO_SEG_IO_SIZE];

  ck_assert_int_eq (PROTO_SEG_IO_SIZE, 48);
  proto_encode_seg_io (&in, buf);
  ck_assert_int_eq (buf[7], 1);
  ck_assert_int_eq (buf[31], 6);
  ck_assert_int_eq (buf[39], 5);
  ck_assert_int_eq (buf[47], 7);
  ck_assert_int_eq (proto_decode_seg_io (buf, sizeof buf, &out), 0);
  ck_assert_uint_eq (out.index, 7);
  ck_assert_uint_eq (out.length, 5);
  ck_assert_uint_eq (out.offset, 4);
  ck_assert_uint_eq (out.gen, 6);
  ck_assert_int_eq (proto_decode_seg_io (buf, sizeof buf - 1, &out), -EBADMSG);
}
END_TEST


START_TEST (test_heartbeat_reply)
{
  uint64_t segs[2] = { 10, 11 };
  struct proto_fence f[3] = { { 1, 5 }, { 2, 6 }, { 3, 7 } };
  struct proto_heartbeat_reply in = { .n = 2,
                                      .segments = segs,
                                      .nfences = 3,
                                      .fences = f },
                               out;
  struct proto_wbuf wb = { 0 };

  proto_encode_heartbeat_reply (&in, &wb);
  ck_assert_uint_eq (wb.len, 4 + 16 + 4 + 48);
  ck_assert_int_eq (proto_decode_heartbeat_reply (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 2);
  ck_assert_uint_eq (out.nfences, 3);
  ck_assert_uint_eq (out.fences[2].epoch, 7);
  proto_heartbeat_reply_free (&out);
  /* A fence count beyond the payload. */
  wb.data[4 + 16] = 0x10;
  ck_assert_int_eq (proto_decode_heartbeat_reply (wb.data, wb.len, &out),
                    -EBADMSG);
  ck_assert_ptr_null (out.fences);
  ck_assert_ptr_null (out.segments);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_repair_messages)
{
  struct proto_pull pin = { .segment = 1,
                            .volume = 2,
                            .epoch = 3,
                            .gen = 4,
                            .mode = PROTO_PULL_DIFF,
                            .bandwidth = 1 << 20,
                            .index = 11,
                            .source = "unix:/tmp/ss1.sock" },
                    pout;
  struct proto_hash_request hin = { .segment = 9,
                                    .offset = 8192,
                                    .length = 65536,
                                    .block = 4096 },
                            hout;
  uint32_t crcs[3] = { 1, 2, 0xffffffffu };
  struct proto_hash hash = { .epoch = 12, .n = 3, .crcs = crcs }, hash2;
  struct proto_set_gen g = { 1, 2, 3, 4 }, g2;
  struct proto_seg_list_request l = { 1, 2, 3, 100 }, l2;
  struct proto_resync rs = { 1, 2, 3 }, rs2;
  struct proto_server_request sr = { 42 }, sr2;
  struct proto_fence fe = { 7, 8 }, fe2;
  struct proto_wbuf wb = { 0 };

  proto_encode_pull (&pin, &wb);
  ck_assert_int_eq (proto_decode_pull (wb.data, wb.len, &pout), 0);
  ck_assert_str_eq (pout.source, "unix:/tmp/ss1.sock");
  ck_assert_uint_eq (pout.bandwidth, 1 << 20);
  ck_assert_uint_eq (pout.index, 11);
  wb.data[35] = 7; /* unknown mode */
  ck_assert_int_eq (proto_decode_pull (wb.data, wb.len, &pout), -EBADMSG);
  proto_wbuf_free (&wb);

  proto_encode_hash_request (&hin, &wb);
  ck_assert_int_eq (proto_decode_hash_request (wb.data, wb.len, &hout), 0);
  ck_assert_uint_eq (hout.offset, 8192);
  proto_wbuf_free (&wb);
  hin.block = 3000;
  proto_encode_hash_request (&hin, &wb);
  ck_assert_int_eq (proto_decode_hash_request (wb.data, wb.len, &hout),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  hin.block = 4096;
  hin.offset = 100;
  proto_encode_hash_request (&hin, &wb);
  ck_assert_int_eq (proto_decode_hash_request (wb.data, wb.len, &hout),
                    -EBADMSG);
  proto_wbuf_free (&wb);

  proto_encode_hash (&hash, &wb);
  ck_assert_int_eq (proto_decode_hash (wb.data, wb.len, &hash2), 0);
  ck_assert_uint_eq (hash2.n, 3);
  ck_assert_uint_eq (hash2.crcs[2], 0xffffffffu);
  ck_assert_uint_eq (hash2.epoch, 12);
  proto_hash_free (&hash2);
  ck_assert_int_eq (proto_decode_hash (wb.data, wb.len - 2, &hash2), -EBADMSG);
  proto_wbuf_free (&wb);

  proto_encode_set_gen (&g, &wb);
  ck_assert_uint_eq (wb.len, 32);
  ck_assert_int_eq (proto_decode_set_gen (wb.data, wb.len, &g2), 0);
  ck_assert_uint_eq (g2.gen, 3);
  ck_assert_uint_eq (g2.index, 4);
  ck_assert_int_eq (proto_decode_set_gen (wb.data, 24, &g2), -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_seg_list_request (&l, &wb);
  ck_assert_int_eq (proto_decode_seg_list_request (wb.data, wb.len, &l2), 0);
  ck_assert_uint_eq (l2.max, 100);
  proto_wbuf_free (&wb);
  l.max = 0;
  proto_encode_seg_list_request (&l, &wb);
  ck_assert_int_eq (proto_decode_seg_list_request (wb.data, wb.len, &l2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_resync (&rs, &wb);
  ck_assert_int_eq (proto_decode_resync (wb.data, wb.len, &rs2), 0);
  ck_assert_uint_eq (rs2.source, 3);
  proto_wbuf_free (&wb);
  proto_encode_server_request (&sr, &wb);
  ck_assert_int_eq (proto_decode_server_request (wb.data, wb.len, &sr2), 0);
  ck_assert_uint_eq (sr2.server, 42);
  ck_assert_int_eq (proto_decode_server_request (wb.data, 3, &sr2), -EBADMSG);
  proto_wbuf_free (&wb);
  proto_encode_fence (&fe, &wb);
  ck_assert_int_eq (proto_decode_fence (wb.data, wb.len, &fe2), 0);
  ck_assert_uint_eq (fe2.epoch, 8);
  proto_wbuf_free (&wb);
}
END_TEST

/* SEG_DESCRIBE: request and reply round trips, and what the decoders
 * refuse.
 */
START_TEST (test_describe)
{
  struct proto_seg_desc segs[2] = {
    { .segment = 5, .volume = 1, .index = 3, .gen = 2, .epoch = 9 },
    { .segment = 8,
      .volume = 2,
      .index = PROTO_INDEX_NONE,
      .gen = 1,
      .epoch = 4,
      .state = 1 },
  };
  struct proto_fence f[1] = { { 1, 10 } };
  struct proto_describe in = { .n = 2,
                               .segs = segs,
                               .nfences = 1,
                               .fences = f },
                        out;
  struct proto_describe_request q = { .start_after = 4, .max = 100 }, q2;
  struct proto_wbuf wb = { 0 };

  proto_encode_describe_request (&q, &wb);
  ck_assert_uint_eq (wb.len, 12);
  ck_assert_int_eq (proto_decode_describe_request (wb.data, wb.len, &q2), 0);
  ck_assert_uint_eq (q2.start_after, 4);
  ck_assert_uint_eq (q2.max, 100);
  ck_assert_int_eq (proto_decode_describe_request (wb.data, 11, &q2), -EBADMSG);
  proto_wbuf_free (&wb);
  q.max = 0;
  proto_encode_describe_request (&q, &wb);
  ck_assert_int_eq (proto_decode_describe_request (wb.data, wb.len, &q2),
                    -EBADMSG);
  proto_wbuf_free (&wb);

  proto_encode_describe (&in, &wb);
  ck_assert_uint_eq (wb.len, 4 + 2 * PROTO_SEG_DESC_SIZE + 4 + 16);
  ck_assert_int_eq (proto_decode_describe (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.n, 2);
  ck_assert_uint_eq (out.segs[0].index, 3);
  ck_assert_uint_eq (out.segs[1].index, PROTO_INDEX_NONE);
  ck_assert_uint_eq (out.segs[1].state, 1);
  ck_assert_uint_eq (out.segs[1].epoch, 4);
  ck_assert_uint_eq (out.nfences, 1);
  ck_assert_uint_eq (out.fences[0].epoch, 10);
  proto_describe_free (&out);
  ck_assert_ptr_null (out.segs);
  /* Trailing bytes, a short payload. */
  ck_assert_int_eq (proto_decode_describe (wb.data, wb.len - 1, &out),
                    -EBADMSG);
  ck_assert_ptr_null (out.segs);
  /* A reserved byte that is not zero. */
  wb.data[4 + PROTO_SEG_DESC_SIZE - 1] = 1;
  ck_assert_int_eq (proto_decode_describe (wb.data, wb.len, &out), -EBADMSG);
  ck_assert_ptr_null (out.segs);
  ck_assert_ptr_null (out.fences);
  proto_wbuf_free (&wb);
  /* Not in ascending order. */
  segs[1].segment = 5;
  proto_encode_describe (&in, &wb);
  ck_assert_int_eq (proto_decode_describe (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
  /* A count beyond the payload. */
  segs[1].segment = 8;
  proto_encode_describe (&in, &wb);
  wb.data[0] = 0x10;
  ck_assert_int_eq (proto_decode_describe (wb.data, wb.len, &out), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

/* TABLES_PUT / TABLES_GET: version then the blob, which the decoder
 * points at in place; at most PROTO_TABLES_MAX bytes of it.
 */
START_TEST (test_tables)
{
  const uint8_t blob[5] = { 1, 2, 3, 4, 5 };
  struct proto_tables in = { .version = 42, .blob = blob, .len = 5 }, out;
  struct proto_wbuf wb = { 0 };
  uint8_t *big;

  proto_encode_tables (&in, &wb);
  ck_assert_uint_eq (wb.len, 13);
  ck_assert_int_eq (proto_decode_tables (wb.data, wb.len, &out), 0);
  ck_assert_uint_eq (out.version, 42);
  ck_assert_uint_eq (out.len, 5);
  ck_assert_ptr_eq (out.blob, wb.data + 8);
  ck_assert_int_eq (proto_decode_tables (wb.data, 8, &out), 0);
  ck_assert_uint_eq (out.len, 0);
  ck_assert_ptr_null (out.blob);
  ck_assert_int_eq (proto_decode_tables (wb.data, 7, &out), -EBADMSG);
  proto_wbuf_free (&wb);
  big = calloc (1, PROTO_TABLES_MAX + 9);
  ck_assert_ptr_nonnull (big);
  ck_assert_int_eq (proto_decode_tables (big, PROTO_TABLES_MAX + 8, &out), 0);
  ck_assert_int_eq (proto_decode_tables (big, PROTO_TABLES_MAX + 9, &out),
                    -EBADMSG);
  free (big);
}
END_TEST

START_TEST (test_crc32c)
{
  static uint8_t zeros[4096];
  uint32_t c;

  ck_assert_uint_eq (crc32c (0, "123456789", 9), 0xe3069283u);
  ck_assert_uint_eq (crc32c (0, "", 0), 0);
  /* Chaining equals one call, whatever the split. */
  c = crc32c (0, "1234", 4);
  ck_assert_uint_eq (crc32c (c, "56789", 5), 0xe3069283u);
  /* RFC 3720 B.4: 32 bytes of zeros. */
  ck_assert_uint_eq (crc32c (0, zeros, 32), 0x8a9136aau);
}
END_TEST

/* Random bytes into every decoder: never a crash (ASan/valgrind see the
 * rest).  The seed is printed and can be given in TESSERA_TEST_SEED.
 */
/* REPL_PULL: request and reply round trips; malformed requests (MAX,
 * WAIT_MS, empty name, short) and replies (a chunk past its batch or the
 * payload, out of order, sequence 0, a count past the payload).
 */
START_TEST (test_repl_messages)
{
  static const uint8_t d1[5] = { 1, 2, 3, 4, 5 },
                       d2[8] = { 6, 7, 8 }; /* 8: a bad chunk reads past 3 */
  struct proto_repl_pull q = { 41, 0, PROTO_REPL_CHUNK_MAX, 1000, "b" }, q2;
  struct proto_repl_chunk c[3] = {
    { 42, 8, 3, 5, d1 }, /* the end of batch 42 */
    { 43, 3, 0, 3, d2 }, /* all of batch 43 */
    { 44, 9, 0, 3, d2 }, /* the start of batch 44 */
  };
  struct proto_repl_reply r;
  struct proto_wbuf wb = { 0 };
  uint8_t buf[256];
  size_t len;
  int i;

  proto_encode_repl_pull (&q, &wb);
  ck_assert_int_eq (proto_decode_repl_pull (wb.data, wb.len, &q2), 0);
  ck_assert_uint_eq (q2.after, 41);
  ck_assert_uint_eq (q2.max, PROTO_REPL_CHUNK_MAX);
  ck_assert_str_eq (q2.name, "b");
  ck_assert_int_eq (proto_decode_repl_pull (wb.data, wb.len - 1, &q2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  for (i = 0; i < 3; i++) {
    struct proto_repl_pull bad = q;

    if (i == 0)
      bad.max = 0;
    else if (i == 1)
      bad.wait_ms = PROTO_REPL_WAIT_MAX_MS + 1;
    else
      bad.name[0] = '\0';
    proto_encode_repl_pull (&bad, &wb);
    ck_assert_int_eq (proto_decode_repl_pull (wb.data, wb.len, &q2), -EBADMSG);
    proto_wbuf_free (&wb);
    memset (&wb, 0, sizeof wb);
  }

  proto_encode_repl_reply_head (44, 3, &wb);
  for (i = 0; i < 3; i++)
    proto_encode_repl_chunk (&c[i], &wb);
  ck_assert_int_eq (proto_decode_repl_reply (wb.data, wb.len, &r), 0);
  ck_assert_uint_eq (r.published, 44);
  ck_assert_uint_eq (r.n, 3);
  ck_assert_uint_eq (r.chunks[0].offset, 3);
  ck_assert_mem_eq (r.chunks[0].data, d1, 5);
  ck_assert_mem_eq (r.chunks[2].data, d2, 3);
  proto_repl_reply_free (&r);
  len = wb.len;
  memcpy (buf, wb.data, len);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  ck_assert_int_eq (proto_decode_repl_reply (buf, len - 1, &r), -EBADMSG);
  ck_assert_int_eq (proto_decode_repl_reply (buf, 11, &r), -EBADMSG);
  buf[len] = 0;
  ck_assert_int_eq (proto_decode_repl_reply (buf, len + 1, &r), -EBADMSG);
  /* Each bad chunk list. */
  for (i = 0; i < 5; i++) {
    struct proto_repl_chunk b[2] = { c[1], c[2] };

    if (i == 0)
      b[0].len = 4; /* past its batch */
    else if (i == 1)
      b[1].seq = 45; /* skips a batch */
    else if (i == 2)
      b[0].seq = 0;
    else if (i == 3)
      b[1].offset = 1; /* a new batch not from its start */
    else
      b[0].total = 4; /* the next batch before this one is complete */
    proto_encode_repl_reply_head (44, 2, &wb);
    proto_encode_repl_chunk (&b[0], &wb);
    proto_encode_repl_chunk (&b[1], &wb);
    ck_assert_msg (proto_decode_repl_reply (wb.data, wb.len, &r) == -EBADMSG,
                   "bad chunk list %d accepted", i);
    proto_wbuf_free (&wb);
    memset (&wb, 0, sizeof wb);
  }
  /* A count the payload cannot hold. */
  proto_encode_repl_reply_head (44, 1000000, &wb);
  ck_assert_int_eq (proto_decode_repl_reply (wb.data, wb.len, &r), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

/* CATALOG_BACKUP: request and chunk round trips, and every malformed
 * form: MAX out of range, a short or long payload, a chunk whose data
 * overruns the copy or the payload, backup id 0.
 */
START_TEST (test_backup_messages)
{
  static const uint8_t data[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  struct proto_backup_request q = { 5, 4096, PROTO_BACKUP_CHUNK_MAX }, q2;
  struct proto_backup_chunk c = { 5, 4104, { 0xaa, 0xbb }, 4096, 8, data }, c2;
  struct proto_wbuf wb = { 0 };
  uint8_t buf[128];
  size_t head;

  proto_encode_backup_request (&q, &wb);
  ck_assert_uint_eq (wb.len, 20);
  ck_assert_int_eq (proto_decode_backup_request (wb.data, wb.len, &q2), 0);
  ck_assert_uint_eq (q2.backup_id, 5);
  ck_assert_uint_eq (q2.offset, 4096);
  ck_assert_uint_eq (q2.max, PROTO_BACKUP_CHUNK_MAX);
  ck_assert_int_eq (proto_decode_backup_request (wb.data, wb.len - 1, &q2),
                    -EBADMSG);
  memcpy (buf, wb.data, wb.len);
  buf[wb.len] = 0;
  ck_assert_int_eq (proto_decode_backup_request (buf, wb.len + 1, &q2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  q.max = 0;
  proto_encode_backup_request (&q, &wb);
  ck_assert_int_eq (proto_decode_backup_request (wb.data, wb.len, &q2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  q.max = PROTO_BACKUP_CHUNK_MAX + 1;
  proto_encode_backup_request (&q, &wb);
  ck_assert_int_eq (proto_decode_backup_request (wb.data, wb.len, &q2),
                    -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);

  proto_encode_backup_chunk (&c, &wb);
  head = wb.len - 8;
  ck_assert_uint_eq (head, 60);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), 0);
  ck_assert_uint_eq (c2.backup_id, 5);
  ck_assert_uint_eq (c2.size, 4104);
  ck_assert_mem_eq (c2.sha256, c.sha256, PROTO_BACKUP_SHA256_SIZE);
  ck_assert_uint_eq (c2.offset, 4096);
  ck_assert_uint_eq (c2.len, 8);
  ck_assert_ptr_eq (c2.data, (const uint8_t *)wb.data + head);
  ck_assert_mem_eq (c2.data, data, 8);
  /* Fewer or more data bytes than LEN says. */
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len - 1, &c2),
                    -EBADMSG);
  ck_assert_uint_eq (c2.len, 0);
  memcpy (buf, wb.data, wb.len);
  buf[wb.len] = 9;
  ck_assert_int_eq (proto_decode_backup_chunk (buf, wb.len + 1, &c2), -EBADMSG);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, 10, &c2), -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  /* Data past the end of the copy, an offset past it, an overflow. */
  c.size = 4100;
  proto_encode_backup_chunk (&c, &wb);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  c.size = 100;
  c.len = 0;
  c.data = NULL;
  proto_encode_backup_chunk (&c, &wb);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  c.size = UINT64_MAX;
  c.offset = UINT64_MAX - 3;
  c.len = 8;
  c.data = data;
  proto_encode_backup_chunk (&c, &wb);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), -EBADMSG);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  /* The end of the copy: no data. */
  c.size = c.offset = 4096;
  c.len = 0;
  c.data = NULL;
  proto_encode_backup_chunk (&c, &wb);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), 0);
  ck_assert_ptr_null (c2.data);
  proto_wbuf_free (&wb);
  memset (&wb, 0, sizeof wb);
  /* Backup id 0 is never a backup. */
  c.backup_id = 0;
  proto_encode_backup_chunk (&c, &wb);
  ck_assert_int_eq (proto_decode_backup_chunk (wb.data, wb.len, &c2), -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

START_TEST (test_random_garbage)
{
  const char *env = getenv ("TESSERA_TEST_SEED");
  unsigned seed =
      env ? (unsigned)strtoul (env, NULL, 0) : (unsigned)time (NULL);
  uint8_t buf[512];
  int i;
  size_t j, len;

  printf ("test_random_garbage: seed %u\n", seed);
  srandom (seed);
  for (i = 0; i < 20000; ++i) {
    static struct proto_hello h;
    static struct proto_register reg;
    struct proto_heartbeat hb;
    struct proto_segment_list sl;
    struct proto_server_list svl;
    struct proto_volume_list vl;
    static struct proto_volume_info vi;
    static struct proto_vol_request vr;
    static struct proto_open_reply orp;
    struct proto_map m;
    struct proto_map_request mr;
    struct proto_heartbeat_reply hr;
    struct proto_hash hs;
    static struct proto_pull pl;
    struct proto_backup_request bq;
    struct proto_backup_chunk bc;
    struct proto_describe ds;
    struct proto_describe_request dq;
    struct proto_tables tb;

    len = random () % sizeof buf;
    for (j = 0; j < len; ++j)
      buf[j] = random () & (i & 1 ? 0x03 : 0xff);
    if (proto_decode_hello (buf, len, &h) == 0)
      ck_assert_uint_le (h.auth_len, PROTO_AUTH_MAX);
    proto_decode_register (buf, len, &reg);
    if (proto_decode_heartbeat (buf, len, &hb) == 0)
      proto_heartbeat_free (&hb);
    if (proto_decode_segment_list (buf, len, &sl) == 0)
      proto_segment_list_free (&sl);
    if (proto_decode_server_list (buf, len, &svl) == 0)
      proto_server_list_free (&svl);
    if (proto_decode_volume_list (buf, len, &vl) == 0)
      proto_volume_list_free (&vl);
    proto_decode_volume_info (buf, len, &vi);
    proto_decode_vol_request (buf, len, &vr);
    proto_decode_open_reply (buf, len, &orp);
    if (proto_decode_map (buf, len, &m) == 0)
      proto_map_free (&m);
    proto_decode_map_request (buf, len, &mr);
    if (proto_decode_heartbeat_reply (buf, len, &hr) == 0)
      proto_heartbeat_reply_free (&hr);
    if (proto_decode_hash (buf, len, &hs) == 0)
      proto_hash_free (&hs);
    proto_decode_pull (buf, len, &pl);
    if (proto_decode_backup_request (buf, len, &bq) == 0)
      ck_assert (bq.max >= 1 && bq.max <= PROTO_BACKUP_CHUNK_MAX);
    if (proto_decode_backup_chunk (buf, len, &bc) == 0)
      ck_assert (bc.offset <= bc.size && bc.len <= bc.size - bc.offset &&
                 (const uint8_t *)bc.data + bc.len <= buf + len);
    if (proto_decode_describe (buf, len, &ds) == 0)
      proto_describe_free (&ds);
    proto_decode_describe_request (buf, len, &dq);
    if (proto_decode_tables (buf, len, &tb) == 0)
      ck_assert_uint_eq (tb.len, len - 8);
  }
}
END_TEST

/* A writer that trickles bytes one at a time, so that reads come short. */
struct trickle {
  int fd;
  const uint8_t *data;
  size_t len;
};

static void *
trickle_thread (void *arg)
{
  struct trickle *t = arg;
  size_t i;

  for (i = 0; i < t->len; ++i)
    ck_assert_int_eq (write (t->fd, &t->data[i], 1), 1);
  return NULL;
}

START_TEST (test_full_read_short_counts)
{
  int sv[2];
  static uint8_t data[3000], got[3000];
  struct trickle t;
  pthread_t th;
  size_t i;

  for (i = 0; i < sizeof data; ++i)
    data[i] = i * 7;
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  t.fd = sv[1];
  t.data = data;
  t.len = sizeof data;
  pthread_create (&th, NULL, trickle_thread, &t);
  ck_assert_int_eq (full_read (sv[0], got, sizeof got), 0);
  pthread_join (th, NULL);
  ck_assert_mem_eq (got, data, sizeof data);
  /* End of file before the buffer is full. */
  ck_assert_int_eq (write (sv[1], data, 10), 10);
  close (sv[1]);
  ck_assert_int_eq (full_read (sv[0], got, 20), -EPIPE);
  close (sv[0]);
}
END_TEST

START_TEST (test_frame_send_recv)
{
  int sv[2];
  struct proto_header h;
  void *p;
  uint8_t junk[PROTO_HEADER_SIZE];

  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ck_assert_int_eq (
      proto_send_frame (sv[0], PROTO_OP_VOL_INFO, 0, 0, 42, "abc", 3), 0);
  ck_assert_int_eq (proto_recv_frame (sv[1], 1024, &h, &p), 0);
  ck_assert_uint_eq (h.tag, 42);
  ck_assert_uint_eq (h.length, 3);
  ck_assert_mem_eq (p, "abc", 3);
  free (p);
  /* Over the caller's limit: refused before reading or allocating. */
  ck_assert_int_eq (
      proto_send_frame (sv[0], PROTO_OP_VOL_INFO, 0, 0, 1, "abcdef", 6), 0);
  ck_assert_int_eq (proto_recv_frame (sv[1], 5, &h, &p), -EMSGSIZE);
  ck_assert_ptr_null (p);
  close (sv[0]);
  close (sv[1]);
  /* Bad magic, then a truncated frame. */
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  memset (junk, 0x55, sizeof junk);
  ck_assert_int_eq (write (sv[0], junk, sizeof junk), sizeof junk);
  ck_assert_int_eq (proto_recv_frame (sv[1], 1024, &h, &p), -EBADMSG);
  make_header (junk, PROTO_OP_VOL_INFO, 0, 0, 100);
  ck_assert_int_eq (write (sv[0], junk, sizeof junk), sizeof junk);
  ck_assert_int_eq (write (sv[0], "xx", 2), 2);
  close (sv[0]);
  ck_assert_int_eq (proto_recv_frame (sv[1], 1024, &h, &p), -EPIPE);
  ck_assert_ptr_null (p);
  close (sv[1]);
}
END_TEST

static Suite *
proto_suite (void)
{
  Suite *s = suite_create ("proto");
  TCase *tc;

  tc = tcase_create ("header");
  tcase_add_test (tc, test_header_round_trip);
  tcase_add_test (tc, test_header_bad_magic);
  tcase_add_test (tc, test_header_bad_version);
  tcase_add_test (tc, test_header_unknown_opcode);
  tcase_add_test (tc, test_opcode_table);
  tcase_add_test (tc, test_header_bad_flags_status);
  tcase_add_test (tc, test_header_oversized);
  tcase_add_test (tc, test_status_errno);
  suite_add_tcase (s, tc);

  tc = tcase_create ("messages");
  tcase_add_test (tc, test_hello);
  tcase_add_test (tc, test_hello_mds_epoch);
  tcase_add_test (tc, test_register);
  tcase_add_test (tc, test_string_too_long);
  tcase_add_test (tc, test_open_token);
  tcase_add_test (tc, test_volume_list);
  tcase_add_test (tc, test_server_list);
  tcase_add_test (tc, test_map);
  tcase_add_test (tc, test_map_request);
  tcase_add_test (tc, test_heartbeat_segments);
  tcase_add_test (tc, test_small_fixed);
  tcase_add_test (tc, test_status_zones);
  tcase_add_test (tc, test_status_ha);
  tcase_add_test (tc, test_seg_io);
  tcase_add_test (tc, test_heartbeat_reply);
  tcase_add_test (tc, test_repair_messages);
  tcase_add_test (tc, test_repl_messages);
  tcase_add_test (tc, test_backup_messages);
  tcase_add_test (tc, test_describe);
  tcase_add_test (tc, test_tables);
  tcase_add_test (tc, test_crc32c);
  suite_add_tcase (s, tc);

  tc = tcase_create ("malformed");
  tcase_add_test (tc, test_random_garbage);
  tcase_set_timeout (tc, 60);
  suite_add_tcase (s, tc);

  tc = tcase_create ("io");
  tcase_add_test (tc, test_full_read_short_counts);
  tcase_add_test (tc, test_frame_send_recv);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (proto_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
