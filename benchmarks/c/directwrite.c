/*
 * directwrite: how fast the disk takes O_DIRECT writes from a 4 MiB buffer, depending on the
 * buffer's memory (what pageflux's huge-page pool buffers are about; README, Benchmarks).
 *
 *   gcc -O2 -pthread -o directwrite benchmarks/c/directwrite.c
 *   sync; ./directwrite malloc|huge|frag FILE [THREADS] [CHUNK_MIB]
 *
 * Writes 1 GiB to FILE (O_DIRECT, then fsync) with pwrite()s of CHUNK_MIB (4) MiB, from one
 * buffer per thread:
 *   malloc  aligned_alloc memory (small pages, as a C loop or ByteBuffer.allocateDirect gets)
 *   huge    its own mapping, 2 MiB-aligned, MADV_HUGEPAGE (transparent huge pages)
 *   frag    like malloc, first touched from the end (pages handed out in another order)
 * Prints the time and GiB/s. Compare the disk requests: awk '$3=="vda"{print $8}' /proc/diskstats
 * before and after (writes completed).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static int fd; static size_t chunk; static char *bufs[8]; static int nth;
static void *wr(void *a){ long i=(long)a; for(long off=i*chunk; off<(1L<<30); off+=nth*chunk){ if(pwrite(fd,bufs[i],chunk,off)!=(ssize_t)chunk){perror("pwrite");exit(1);} } return 0;}
int main(int c,char**v){
  nth=c>3?atoi(v[3]):1; chunk=(c>4?atol(v[4]):4)<<20;
  for(int i=0;i<nth;i++){
    if(!strcmp(v[1],"huge")){ char*p=mmap(0,chunk+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); p=(char*)(((unsigned long)p+(2<<20)-1)&~((2UL<<20)-1)); madvise(p,chunk,MADV_HUGEPAGE); bufs[i]=p; }
    else if(!strcmp(v[1],"frag")){ /* touch pages in reverse order */ char*p=aligned_alloc(4096,chunk); for(long o=chunk-4096;o>=0;o-=4096)p[o]=1; bufs[i]=p; }
    else { bufs[i]=aligned_alloc(4096,chunk); }
    memset(bufs[i],i+1,chunk);
  }
  fd=open(v[2],O_WRONLY|O_CREAT|O_TRUNC|O_DIRECT,0644);
  double s=now(); pthread_t t[8];
  for(long i=0;i<nth;i++)pthread_create(&t[i],0,wr,(void*)i);
  for(int i=0;i<nth;i++)pthread_join(t[i],0);
  fsync(fd); double e=now();
  printf("%s threads=%d chunk=%zuMiB %.3fs %.2f GiB/s\n",v[1],nth,chunk>>20,e-s,1/(e-s));
}
