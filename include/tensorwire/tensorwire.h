/* tensorwire umbrella header: everything public in one include. */
#ifndef TENSORWIRE_H
#define TENSORWIRE_H

#include <tensorwire/status.h>
#include <tensorwire/buf.h>
#include <tensorwire/dlpack.h>
#include <tensorwire/tensor.h>
#include <tensorwire/value.h>
#include <tensorwire/frame.h>
#include <tensorwire/message.h>
#include <tensorwire/future.h>
#include <tensorwire/agent.h>
#include <tensorwire/rref.h>
#include <tensorwire/autograd.h>
#include <tensorwire/schema.h>
#include <tensorwire/uring.h>
#include <tensorwire/shm.h>
#include <tensorwire/dpdk.h>
#include <tensorwire/log.h>
#include <tensorwire/hist.h>
#include <tensorwire/stats.h>

#define TW_VERSION_MAJOR 0
#define TW_VERSION_MINOR 1
#define TW_VERSION_PATCH 0

#endif
