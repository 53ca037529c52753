"""inferlab.bench"""
