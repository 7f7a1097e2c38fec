/* Unit tests for DLPack export/import, plus a NumPy (and torch) interop run. */
#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <tensorwire/tensor.h>

/* Release callback of user buffers: counts how often bytes are let go. */
static int released;
static void count_release(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	released++;
}

/* Deleter of hand-made managed tensors: counts calls. */
static int deleted;
static void count_deleter(DLManagedTensor *self)
{
	(void)self;
	deleted++;
}

/* A float32 tensor of n elements over static memory whose release we see. */
static void user_tensor(tw_tensor *t, float *mem, int64_t n)
{
	tw_buf *buf;
	cr_assert_eq(tw_buf_from_user(mem, (size_t)n * sizeof(float),
				      count_release, NULL, &buf),
		     TW_OK);
	for (int64_t i = 0; i < n; i++)
		mem[i] = (float)i;
	cr_assert_eq(tw_tensor_init(t, TW_FLOAT32, 1, &n, NULL, mem, buf),
		     TW_OK);
	tw_buf_release(buf);
}

Test(export, fields_every_dtype)
{
	static const DLDataType want[TW_DTYPE_COUNT_] = {
		[TW_BOOL] = {kDLBool, 8, 1},
		[TW_UINT8] = {kDLUInt, 8, 1},
		[TW_INT8] = {kDLInt, 8, 1},
		[TW_INT16] = {kDLInt, 16, 1},
		[TW_INT32] = {kDLInt, 32, 1},
		[TW_INT64] = {kDLInt, 64, 1},
		[TW_FLOAT16] = {kDLFloat, 16, 1},
		[TW_BFLOAT16] = {kDLBfloat, 16, 1},
		[TW_FLOAT32] = {kDLFloat, 32, 1},
		[TW_FLOAT64] = {kDLFloat, 64, 1},
	};
	for (unsigned d = 0; d < TW_DTYPE_COUNT_; d++) {
		tw_tensor t;
		cr_assert_eq(tw_tensor_alloc(&t, (tw_dtype)d, 2,
					     (int64_t[]){2, 3}),
			     TW_OK);
		DLManagedTensor *mt = NULL;
		cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
		const DLTensor *dt = &mt->dl_tensor;
		cr_assert_eq(dt->data, t.data);
		cr_assert_eq(dt->device.device_type, kDLCPU);
		cr_assert_eq(dt->device.device_id, 0);
		cr_assert_eq(dt->ndim, 2);
		cr_assert_eq(dt->dtype.code, want[d].code, "dtype %u", d);
		cr_assert_eq(dt->dtype.bits, want[d].bits, "dtype %u", d);
		cr_assert_eq(dt->dtype.lanes, 1);
		cr_assert_eq(dt->shape[0], 2);
		cr_assert_eq(dt->shape[1], 3);
		cr_assert_not_null(dt->strides);
		cr_assert_eq(dt->strides[0], 3);
		cr_assert_eq(dt->strides[1], 1);
		cr_assert_eq(dt->byte_offset, 0);
		cr_assert_not_null(mt->deleter);
		cr_assert_eq(tw_buf_refcnt(t.buf), 2,
			     "export holds its own reference");
		tw_tensor_release(&t);
		mt->deleter(mt);
	}
}

Test(export, outlives_tensor_and_deleter_frees)
{
	static float mem[5];
	tw_tensor t;
	released = 0;
	user_tensor(&t, mem, 5);
	DLManagedTensor *mt;
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(released, 0, "the export keeps the bytes alive");
	cr_assert_eq(((float *)mt->dl_tensor.data)[4], 4.0f);
	mt->deleter(mt);
	cr_assert_eq(released, 1);
}

Test(export, strided_scalar_empty_and_borrowed)
{
	static int16_t mem[6] = {1, 2, 3, 4, 5, 6};
	tw_tensor t;
	DLManagedTensor *mt;

	/* Transposed view: strides travel as they are. */
	cr_assert_eq(tw_tensor_init(&t, TW_INT16, 2, (int64_t[]){3, 2},
				    (int64_t[]){1, 3}, mem, NULL),
		     TW_OK);
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
	cr_assert_eq(mt->dl_tensor.strides[0], 1);
	cr_assert_eq(mt->dl_tensor.strides[1], 3);
	mt->deleter(mt); /* NULL buf: nothing to release, block freed */

	/* 0-dim. */
	cr_assert_eq(tw_tensor_init(&t, TW_INT16, 0, NULL, NULL, mem, NULL),
		     TW_OK);
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
	cr_assert_eq(mt->dl_tensor.ndim, 0);
	cr_assert_not_null(mt->dl_tensor.shape);
	mt->deleter(mt);

	/* Empty. */
	cr_assert_eq(tw_tensor_alloc(&t, TW_INT16, 2, (int64_t[]){0, 4}),
		     TW_OK);
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
	cr_assert_eq(mt->dl_tensor.shape[0], 0);
	tw_tensor_release(&t);
	mt->deleter(mt);

	/* Invalid handles are refused. */
	cr_assert_eq(tw_tensor_to_dlpack(NULL, &mt), TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_INT16, 1, (int64_t[]){6}, NULL, mem,
				    NULL),
		     TW_OK);
	cr_assert_eq(tw_tensor_to_dlpack(&t, NULL), TW_EINVAL);
	t.ndim = 9;
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_EINVAL);
	t.ndim = 1;
	t.dtype = 99;
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_EINVAL);
}

Test(roundtrip, no_copy_single_release)
{
	static float mem[6];
	tw_tensor t;
	released = 0;
	user_tensor(&t, mem, 6);
	DLManagedTensor *mt;
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);

	tw_tensor back;
	cr_assert_eq(tw_tensor_from_dlpack(mt, &back), TW_OK);
	cr_assert_eq(back.data, t.data, "no copy");
	cr_assert_eq(back.dtype, TW_FLOAT32);
	cr_assert_eq(back.ndim, 1);
	cr_assert_eq(back.shape[0], 6);
	cr_assert_eq(back.strides[0], 1);
	cr_assert_not_null(back.buf);
	cr_assert_neq(back.buf, t.buf);
	cr_assert(tw_tensor_equal(&back, &t));

	/* A second handle on the import: the deleter waits for both. */
	tw_tensor back2;
	tw_tensor_ref(&back2, &back);
	tw_tensor_release(&t);
	tw_tensor_release(&back);
	cr_assert_eq(released, 0);
	tw_tensor_release(&back2);
	cr_assert_eq(released, 1, "deleter ran once and dropped the last ref");
}

Test(roundtrip, importer_first_then_exporter)
{
	static float mem[3];
	tw_tensor t;
	released = 0;
	user_tensor(&t, mem, 3);
	DLManagedTensor *mt;
	cr_assert_eq(tw_tensor_to_dlpack(&t, &mt), TW_OK);
	tw_tensor back;
	cr_assert_eq(tw_tensor_from_dlpack(mt, &back), TW_OK);
	tw_tensor_release(&back); /* runs the deleter: the export's ref goes */
	cr_assert_eq(released, 0);
	cr_assert_eq(tw_buf_refcnt(t.buf), 1);
	tw_tensor_release(&t);
	cr_assert_eq(released, 1);
}

Test(roundtrip, strided_view_and_scalar)
{
	tw_tensor m;
	cr_assert_eq(tw_tensor_alloc(&m, TW_INT64, 2, (int64_t[]){2, 3}),
		     TW_OK);
	for (int i = 0; i < 6; i++)
		((int64_t *)m.data)[i] = i * 10;
	tw_tensor tr;
	cr_assert_eq(tw_tensor_init(&tr, TW_INT64, 2, (int64_t[]){3, 2},
				    (int64_t[]){1, 3}, m.data, m.buf),
		     TW_OK);
	DLManagedTensor *mt;
	cr_assert_eq(tw_tensor_to_dlpack(&tr, &mt), TW_OK);
	tw_tensor back;
	cr_assert_eq(tw_tensor_from_dlpack(mt, &back), TW_OK);
	cr_assert_eq(back.strides[0], 1);
	cr_assert_eq(back.strides[1], 3);
	cr_assert(tw_tensor_equal(&back, &tr));
	cr_assert_eq(back.buf->size, 6 * sizeof(int64_t),
		     "buffer covers the span");
	tw_tensor_release(&back);

	tw_tensor s;
	cr_assert_eq(tw_tensor_init(&s, TW_INT64, 0, NULL, NULL,
				    (int64_t *)m.data + 5, m.buf),
		     TW_OK);
	cr_assert_eq(tw_tensor_to_dlpack(&s, &mt), TW_OK);
	cr_assert_eq(tw_tensor_from_dlpack(mt, &back), TW_OK);
	cr_assert_eq(back.ndim, 0);
	cr_assert_eq(*(int64_t *)back.data, 50);
	tw_tensor_release(&back);

	tw_tensor_release(&s);
	tw_tensor_release(&tr);
	cr_assert_eq(tw_buf_refcnt(m.buf), 1);
	tw_tensor_release(&m);
}

/* A producer's tensor as another library would hand it over. */
struct foreign {
	DLManagedTensor mt;
	int64_t shape[TW_TENSOR_MAX_DIMS + 2];
	int64_t strides[TW_TENSOR_MAX_DIMS + 2];
	uint8_t bytes[256];
};

static void foreign_init(struct foreign *f)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 256; i++)
		f->bytes[i] = (uint8_t)i;
	f->shape[0] = 2;
	f->shape[1] = 3;
	f->mt.dl_tensor.data = f->bytes;
	f->mt.dl_tensor.device = (DLDevice){kDLCPU, 0};
	f->mt.dl_tensor.ndim = 2;
	f->mt.dl_tensor.dtype = (DLDataType){kDLUInt, 8, 1};
	f->mt.dl_tensor.shape = f->shape;
	f->mt.dl_tensor.strides = NULL;
	f->mt.manager_ctx = f;
	f->mt.deleter = count_deleter;
}

Test(import, foreign_compact_offset_and_devices)
{
	struct foreign f;
	foreign_init(&f);
	f.mt.dl_tensor.byte_offset = 10;
	deleted = 0;

	tw_tensor t;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	cr_assert_eq(t.data, f.bytes + 10, "byte_offset applied");
	cr_assert_eq(t.dtype, TW_UINT8);
	cr_assert_eq(t.strides[0], 3, "NULL strides read as compact");
	cr_assert_eq(t.strides[1], 1);
	cr_assert_eq(((uint8_t *)t.data)[5], 15);
	cr_assert_eq(deleted, 0);
	tw_tensor_release(&t);
	cr_assert_eq(deleted, 1);

	/* Pinned host memory of a CUDA context is plain CPU memory to us. */
	foreign_init(&f);
	f.mt.dl_tensor.device = (DLDevice){kDLCUDAHost, 0};
	f.mt.dl_tensor.dtype = (DLDataType){kDLBool, 8, 1};
	deleted = 0;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	cr_assert_eq(t.dtype, TW_BOOL);
	tw_tensor_release(&t);
	cr_assert_eq(deleted, 1);

	/* A NULL deleter means nothing to clean up. */
	foreign_init(&f);
	f.mt.deleter = NULL;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	tw_tensor_release(&t);
}

Test(import, every_dtype_mapping)
{
	static const struct {
		DLDataType dl;
		tw_dtype want;
	} cases[] = {
		{{kDLBool, 8, 1}, TW_BOOL},
		{{kDLUInt, 8, 1}, TW_UINT8},
		{{kDLInt, 8, 1}, TW_INT8},
		{{kDLInt, 16, 1}, TW_INT16},
		{{kDLInt, 32, 1}, TW_INT32},
		{{kDLInt, 64, 1}, TW_INT64},
		{{kDLFloat, 16, 1}, TW_FLOAT16},
		{{kDLBfloat, 16, 1}, TW_BFLOAT16},
		{{kDLFloat, 32, 1}, TW_FLOAT32},
		{{kDLFloat, 64, 1}, TW_FLOAT64},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct foreign f;
		foreign_init(&f);
		f.mt.dl_tensor.dtype = cases[i].dl;
		tw_tensor t;
		cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK,
			     "case %zu", i);
		cr_assert_eq(t.dtype, cases[i].want, "case %zu", i);
		size_t nbytes;
		cr_assert_eq(tw_tensor_nbytes(&t, &nbytes), TW_OK);
		cr_assert_eq(nbytes, 6 * (size_t)cases[i].dl.bits / 8);
		tw_tensor_release(&t);
	}
}

/* Import must fail with want and leave every byte of mt as it was. */
static void expect_rejected(struct foreign *f, tw_status want, const char *what)
{
	struct foreign before;
	memcpy(&before, f, sizeof(before));
	deleted = 0;
	tw_tensor t;
	memset(&t, 0x5A, sizeof(t));
	tw_status st = tw_tensor_from_dlpack(&f->mt, &t);
	cr_assert_eq(st, want, "%s: got %d", what, st);
	cr_assert_eq(memcmp(&before, f, sizeof(before)), 0, "%s: mt untouched",
		     what);
	cr_assert_eq(deleted, 0, "%s: deleter not called", what);
}

Test(import, rejected_leave_mt_untouched)
{
	struct foreign f;

	foreign_init(&f);
	f.mt.dl_tensor.device = (DLDevice){kDLCUDA, 0};
	expect_rejected(&f, TW_ENOTSUP, "CUDA device");
	foreign_init(&f);
	f.mt.dl_tensor.device = (DLDevice){(DLDeviceType)0, 0};
	expect_rejected(&f, TW_ENOTSUP, "device 0");

	foreign_init(&f);
	f.mt.dl_tensor.dtype.lanes = 2;
	expect_rejected(&f, TW_ENOTSUP, "lanes 2");
	foreign_init(&f);
	f.mt.dl_tensor.dtype.lanes = 0;
	expect_rejected(&f, TW_ENOTSUP, "lanes 0");
	foreign_init(&f);
	f.mt.dl_tensor.dtype.code = kDLComplex;
	f.mt.dl_tensor.dtype.bits = 64;
	expect_rejected(&f, TW_ENOTSUP, "complex");
	foreign_init(&f);
	f.mt.dl_tensor.dtype.code = 42;
	expect_rejected(&f, TW_ENOTSUP, "unknown code");
	foreign_init(&f);
	f.mt.dl_tensor.dtype = (DLDataType){kDLFloat, 8, 1};
	expect_rejected(&f, TW_ENOTSUP, "float8");
	foreign_init(&f);
	f.mt.dl_tensor.dtype = (DLDataType){kDLBool, 1, 1};
	expect_rejected(&f, TW_ENOTSUP, "1-bit bool");
	foreign_init(&f);
	f.mt.dl_tensor.dtype = (DLDataType){kDLUInt, 16, 1};
	expect_rejected(&f, TW_ENOTSUP, "uint16");

	foreign_init(&f);
	f.mt.dl_tensor.ndim = 9;
	for (int i = 0; i < 9; i++)
		f.shape[i] = 1;
	expect_rejected(&f, TW_EINVAL, "ndim 9");
	foreign_init(&f);
	f.mt.dl_tensor.ndim = -1;
	expect_rejected(&f, TW_EINVAL, "ndim -1");
	foreign_init(&f);
	f.mt.dl_tensor.shape = NULL;
	expect_rejected(&f, TW_EINVAL, "NULL shape");
	foreign_init(&f);
	f.shape[1] = -3;
	expect_rejected(&f, TW_EINVAL, "negative shape");
	foreign_init(&f);
	f.mt.dl_tensor.strides = f.strides;
	f.strides[0] = -3;
	f.strides[1] = 1;
	expect_rejected(&f, TW_EINVAL, "negative stride");
	foreign_init(&f);
	f.shape[0] = INT64_MAX;
	expect_rejected(&f, TW_EOVERFLOW, "numel overflow");
	foreign_init(&f);
	f.mt.dl_tensor.data = NULL;
	expect_rejected(&f, TW_EINVAL, "NULL data");
	foreign_init(&f);
	f.mt.dl_tensor.byte_offset = UINT64_MAX - 2;
	expect_rejected(&f, TW_EOVERFLOW, "byte_offset wraps the address");

	tw_tensor t;
	cr_assert_eq(tw_tensor_from_dlpack(NULL, &t), TW_EINVAL);
	foreign_init(&f);
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, NULL), TW_EINVAL);

	/* The base case itself imports, so the rejections above are due to
	 * the one field each changed. */
	deleted = 0;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(deleted, 1);
}

Test(import, empty_and_scalar)
{
	struct foreign f;
	foreign_init(&f);
	f.shape[0] = 0;
	f.mt.dl_tensor.data = NULL; /* nothing addressed, no address needed */
	deleted = 0;
	tw_tensor t;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	int64_t numel;
	cr_assert_eq(tw_tensor_numel(&t, &numel), TW_OK);
	cr_assert_eq(numel, 0);
	tw_tensor_release(&t);
	cr_assert_eq(deleted, 1);

	foreign_init(&f);
	f.mt.dl_tensor.ndim = 0;
	f.mt.dl_tensor.shape = NULL;
	deleted = 0;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_OK);
	cr_assert_eq(t.ndim, 0);
	cr_assert_eq(t.buf->size, 1);
	tw_tensor_release(&t);
	cr_assert_eq(deleted, 1);
}

/*
 * Interop: NumPy (and torch when installed) take an exported tensor
 * through the Python DLPack protocol without copying. The script loads the
 * shared library with ctypes; in a sanitizer build that library needs the
 * sanitizer runtime preloaded into the interpreter.
 */
#define PYTHON "/usr/bin/python3"
#define SKIP_CODE 77

#if defined(__SANITIZE_ADDRESS__)
#define TW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TW_ASAN 1
#endif
#endif

#ifdef TW_ASAN
/* Path of clang's shared ASan runtime (which carries UBSan too), asking
 * the compiler of our own major version first. */
static bool clang_asan_runtime(char *path, size_t size)
{
#ifdef __clang_major__
#define TW_STR_(x) #x
#define TW_STR(x) TW_STR_(x)
	static const char *const cmds[] = {
		"clang-" TW_STR(
			__clang_major__) " -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null",
		"clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null",
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		FILE *f = popen(cmds[i], "r");
		if (f == NULL)
			continue;
		bool got = fgets(path, (int)size, f) != NULL;
		pclose(f);
		if (!got)
			continue;
		path[strcspn(path, "\n")] = '\0';
		/* An unknown name is echoed back bare: require a real file. */
		if (path[0] == '/' && access(path, R_OK) == 0)
			return true;
	}
#endif
	(void)path;
	(void)size;
	return false;
}
#endif

Test(interop, numpy_from_dlpack, .timeout = 120)
{
	if (access(PYTHON, X_OK) != 0)
		cr_skip_test("%s not installed", PYTHON);
	const char *lib = TW_BUILD_DIR "/libtensorwire.so";
	cr_assert_eq(access(lib, R_OK), 0,
		     "%s missing: build the whole project (ninja -C %s)", lib,
		     TW_BUILD_DIR);

	const char *preload = NULL;
#ifdef TW_ASAN
	/* An ASan-instrumented library only loads into a process whose
	 * first library is the ASan runtime: preload the one we run with
	 * (gcc links it dynamically), else clang's shared build of it. */
	static char rt[4096];
	Dl_info info;
	void *sym = dlsym(RTLD_DEFAULT, "__asan_init");
	if (sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL &&
	    strstr(info.dli_fname, ".so") != NULL)
		preload = info.dli_fname;
	else if (clang_asan_runtime(rt, sizeof(rt)))
		preload = rt;
	else
		cr_skip_test("ASan runtime is linked statically and no shared "
			     "one was found: cannot load the instrumented "
			     "library into python");
#endif

	pid_t pid = fork();
	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (preload != NULL) {
			setenv("LD_PRELOAD", preload, 1);
			/* The interpreter keeps its objects to exit: not ours. */
			setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
		}
		execl(PYTHON, PYTHON,
		      TW_TEST_SRCDIR "/unit/rpc/dlpack_numpy.py", lib,
		      (char *)NULL);
		_exit(127);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "python killed by signal %d",
		  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	if (WEXITSTATUS(status) == SKIP_CODE)
		cr_skip_test("numpy not installed for %s", PYTHON);
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "dlpack_numpy.py failed (see its output)");
}

/* Each refusal says which field: the reason names it (tw_errmsg). */
Test(import, refusals_say_why)
{
	struct foreign f;
	tw_tensor t;

	foreign_init(&f);
	f.mt.dl_tensor.device = (DLDevice){kDLCUDA, 0};
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_ENOTSUP);
	cr_assert_str_eq(tw_errmsg(TW_ENOTSUP),
			 "DLPack device type 2: only "
			 "CPU (1) and CUDA host (3) memory can be imported");
	foreign_init(&f);
	f.mt.dl_tensor.dtype = (DLDataType){kDLUInt, 16, 1};
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_ENOTSUP);
	cr_assert_str_eq(tw_errmsg(TW_ENOTSUP),
			 "DLPack dtype (code 1, 16 bits, "
			 "1 lanes) has no tensorwire dtype");
	foreign_init(&f);
	f.mt.dl_tensor.ndim = 9;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "DLPack tensor of 9 dims (0 to 8 import)");
	foreign_init(&f);
	f.shape[1] = -3;
	cr_assert_eq(tw_tensor_from_dlpack(&f.mt, &t), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tensor shape[1] is negative (-3)");

	/* Export: a tensor the exporter cannot describe. */
	tw_tensor bad = {0};
	bad.dtype = 200;
	DLManagedTensor *mt;
	cr_assert_eq(tw_tensor_to_dlpack(&bad, &mt), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tensor dtype 200 is not a tw_dtype");
}
