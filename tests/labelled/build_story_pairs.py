"""Rebuilds story_pairs.jsonl from story_articles.jsonl (run by hand after editing either list).

Every pair of articles of one event is a positive. Negatives are the hand-chosen event pairs
below: HARD (same company or same deal, different event) and OTHER (different companies, the
same kind of news), every article pair across the two (CAP=None; a number would keep that many,
picked with a seed named after the pair so the file is stable). See README.md for the rules.
"""
from pathlib import Path

HERE = Path(__file__).parent
import json, itertools, random, re
arts=[json.loads(l) for l in open(HERE / 'story_articles.jsonl')]
by_event={}
for a in arts: by_event.setdefault(a['event'],[]).append(a)
def norm(t): return " ".join(re.findall(r"[a-z0-9]+", re.sub(r"\s+[-|]\s+[A-Z][\w.&' ]{1,40}$","",t).lower()))
pairs=[]
for ev, items in by_event.items():
    for a,b in itertools.combinations(items,2):
        pairs.append({"a":a['id'],"b":b['id'],"same":True,"kind":"wire_copy" if norm(a['title'])==norm(b['title']) else "rewrite"})
HARD="""apple-fq4-2026-beat apple-fq3-2026-miss
apple-fq4-2026-beat apple-eu-fine-2026-10
apple-fq4-2026-beat apple-vision-air-launch
apple-eu-fine-2026-10 apple-vision-air-launch
msft-atvi-agreed msft-atvi-ftc-sues
msft-atvi-agreed msft-atvi-cma-blocks
msft-atvi-agreed msft-atvi-completed
msft-atvi-ftc-sues msft-atvi-cma-blocks
msft-atvi-cma-blocks msft-atvi-cma-clears
msft-atvi-cma-clears msft-atvi-completed
msft-atvi-ftc-sues msft-atvi-completed
chevron-hess-talks chevron-hess-agreed
chevron-hess-agreed chevron-hess-arbitration-win
chevron-hess-arbitration-win chevron-hess-completed
chevron-hess-talks chevron-hess-completed
chevron-hess-agreed chevron-hess-completed
anglo-rejects-bhp-first bhp-approaches-anglo
anglo-rejects-bhp-first bhp-walks-away
bhp-approaches-anglo bhp-walks-away
nvidia-fq3-2027-beat nvidia-shares-fall-next-day
nvidia-fq3-2027-beat nvidia-china-export-curbs
nvidia-shares-fall-next-day nvidia-china-export-curbs
tesla-q3-deliveries-miss tesla-q2-deliveries-beat
tesla-q3-deliveries-miss tesla-recall-camera
tesla-q2-deliveries-beat tesla-recall-camera
netflix-ms-upgrade netflix-gs-downgrade
netflix-ms-upgrade netflix-raises-prices
coke-dividend-2026 coke-dividend-2025
coke-dividend-2026 coke-q4-beat
coke-dividend-2026 sim-ko-div
intel-layoffs-2024 intel-q2-2024-miss
intel-layoffs-2024 intel-layoffs-2025
meta-states-sue meta-q3-2023-beat
starbucks-hires-niccol starbucks-q3-2024-miss
stocks-rally-powell-jackson-hole stocks-slide-tech-selloff
fed-cuts-sept-2024 fed-cuts-nov-2024
fed-cuts-sept-2024 fed-holds-july-2024
fed-holds-july-2024 fed-cuts-nov-2024
exxon-pioneer-agreed exxon-pioneer-talks
exxon-pioneer-agreed exxon-pioneer-ftc-clears
exxon-pioneer-ftc-clears exxon-pioneer-completed
exxon-pioneer-talks exxon-pioneer-ftc-clears
cisco-splunk-agreed cisco-splunk-completed
broadcom-vmware-eu-clears broadcom-vmware-china-clears
broadcom-vmware-china-clears broadcom-vmware-completed
broadcom-vmware-eu-clears broadcom-vmware-completed
pfizer-seagen-agreed pfizer-cuts-2023-outlook
pfizer-cuts-2023-outlook pfizer-raises-2024-outlook
disney-fq4-2024-beat disney-names-ceo
jpm-buys-first-republic jpm-q1-2023-beat
goldman-q2-2023-fall goldman-q3-2024-jump
walmart-raises-outlook-aug-2024 walmart-cuts-outlook-2025
oracle-shares-soar-cloud oracle-shares-drop-dec
boeing-machinists-strike boeing-strike-ends
boeing-machinists-strike boeing-layoffs-10pct
boeing-layoffs-10pct boeing-strike-ends
amazon-anthropic-2023 amazon-anthropic-2024
amazon-anthropic-2023 amazon-cuts-14000
google-search-monopoly-ruling google-wiz-agreed
google-wiz-agreed wiz-rejects-google-2024
google-wiz-agreed google-wiz-talks-2025
ibm-hashicorp-agreed ibm-hashicorp-talks
ibm-hashicorp-agreed ibm-hashicorp-cma-probe
ibm-hashicorp-agreed ibm-hashicorp-completed
ibm-hashicorp-cma-probe ibm-hashicorp-completed
jnj-talc-settlement jnj-talc-ruling-2025
mcdonalds-ecoli mcdonalds-q3-2024
crowdstrike-outage crowdstrike-delta-lawsuit
unitedhealth-ceo-shooting unitedhealth-ceo-steps-down-2025
target-cuts-outlook-2025 target-raises-outlook-2024
hp-juniper-doj-sues hp-juniper-settles
sim-jnj-pfizer-agreed sim-jnj-pfizer-completed
sim-jnj-pfizer-agreed sim-jnj-pfizer-blocked
sim-jnj-pfizer-agreed sim-jnj-pfizer-talks
sim-jnj-pfizer-blocked sim-jnj-pfizer-completed
sim-jnj-pfizer-talks sim-jnj-pfizer-completed
sim-jnj-pfizer-talks sim-jnj-pfizer-blocked
sim-orcl-jobs sim-orcl-jobs-2
sim-csco-upgrade sim-csco-downgrade
sim-nvda-beat sim-nvda-slide"""
OTHER="""netflix-raises-prices spotify-raises-prices
sim-ko-div sim-wmt-div
exxon-q2-2024-profit chevron-q2-2024-miss
exxon-pioneer-agreed chevron-hess-agreed
caterpillar-q3-miss deere-q3-beat
sim-ms-buyback sim-gs-buyback
apple-fq4-2026-beat meta-q3-2023-beat
coke-q4-beat disney-fq4-2024-beat
walmart-raises-outlook-aug-2024 deere-q3-beat
mcdonalds-ecoli crowdstrike-outage
cisco-splunk-agreed ibm-hashicorp-agreed
pfizer-seagen-agreed google-wiz-agreed
amazon-cuts-14000 intel-layoffs-2024
boeing-layoffs-10pct amazon-cuts-14000"""
CAP=None
for kind, text in (("hard_negative",HARD),("other_company",OTHER)):
    for line in text.splitlines():
        e1,e2=line.split()
        cross=list(itertools.product(by_event[e1],by_event[e2]))
        rng=random.Random(line)
        rng.shuffle(cross)
        for a,b in cross[:CAP]:
            pairs.append({"a":a['id'],"b":b['id'],"same":False,"kind":kind})
with open(HERE / 'story_pairs.jsonl','w') as f:
    for p in pairs: f.write(json.dumps(p)+"\n")
from collections import Counter
print(len(pairs), Counter(p['kind'] for p in pairs), Counter(p['same'] for p in pairs))
