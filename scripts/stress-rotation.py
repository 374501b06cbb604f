#!/usr/bin/env python3
"""Rotation under SIGKILL: an application writes numbered lines to
app.log, rotated every 3000 lines (by rename and by copytruncate, in turn),
while herald (stdout sink) is SIGKILLed at random every 0.3-1.5 s and
started again, for 40 s; a last run drains. Every line must be printed,
each under one event id. Usage: scripts/stress-rotation.py [HERALD_BIN]
(default target/debug/herald). Exits 1 on a missing or repeated line."""
import os, subprocess, sys, tempfile, time, random, json, threading, shutil, signal
herald = sys.argv[1] if len(sys.argv) > 1 else 'target/debug/herald'
herald = os.path.abspath(herald)
base = tempfile.mkdtemp(prefix='herald-stress-')
os.makedirs(base+'/logs'); os.makedirs(base+'/out')
cfg=f'''[agent]
hostname = "s"
data_dir = "{base}/data"
shutdown_grace = "2s"
[sink]
type = "stdout"
max_events_per_second = 0
[[sources.file]]
name = "app"
paths = ["{base}/logs/*.log"]
start_at = "beginning"
fingerprint_timeout = "100ms"
rescan_interval = "200ms"
'''
open(base+'/herald.toml','w').write(cfg)
stop=False
written=[0]
def writer():
    n=0; rot=0
    path=base+'/logs/app.log'
    f=open(path,'a')
    while not stop:
        for _ in range(50):
            f.write(f'n {n:07} payload payload payload\n'); n+=1
        f.flush()
        if n // 3000 > rot:
            rot+=1
            if rot % 2 == 0:
                os.rename(path, f'{path}.{rot}')
                for _ in range(5):
                    f.write(f'n {n:07} payload payload payload\n'); n+=1
                f.flush(); f.close(); f=open(path,'a')
            else:
                shutil.copy(path, f'{path}.{rot}')
                os.truncate(path, 0)
        time.sleep(0.02)
    f.close()
    written[0]=n
t=threading.Thread(target=writer); t.start()
runs=0
end=time.time()+40
while time.time()<end:
    out=open(f'{base}/out/{runs}.jsonl','w')
    p=subprocess.Popen([herald,'run','--config',base+'/herald.toml'],stdout=out,stderr=open(f'{base}/out/{runs}.err','w'))
    time.sleep(random.uniform(0.3,1.5))
    p.send_signal(signal.SIGKILL); p.wait(); runs+=1
stop=True; t.join()
# final run to drain
out=open(f'{base}/out/final.jsonl','w')
p=subprocess.Popen([herald,'run','--config',base+'/herald.toml'],stdout=out,stderr=open(f'{base}/out/final.err','w'))
time.sleep(15); p.send_signal(signal.SIGTERM); p.wait()
ids={}
for fn in os.listdir(base+'/out'):
    if not fn.endswith('.jsonl'): continue
    for l in open(base+'/out/'+fn):
        try: e=json.loads(l)
        except: continue
        if e.get('event')!='herald.log.line': continue
        ids.setdefault(e['payload']['line'],set()).add(e['id'])
n=written[0]
missing=[i for i in range(n) if f'n {i:07} payload payload payload' not in ids]
multi=[k for k,v in ids.items() if len(v)>1]
print('runs',runs,'written',n,'distinct lines',len(ids),'missing',len(missing),'multi-id',len(multi))
print('first missing',missing[:20])
print('multi examples',multi[:5])
shutil.rmtree(base, ignore_errors=True)
sys.exit(1 if missing or multi else 0)
